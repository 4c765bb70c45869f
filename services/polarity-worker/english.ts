// How English is scored: AFINN-165 (© Finn Årup Nielsen, ODbL v1.0, as `sentiment` ships it under MIT © Andrew
// Sliwinski) looked up word by word as
// `sentiment` does, with REVIEW_WORDS below (this project's, MIT) for the vocabulary of reviews it misses or
// signs wrongly.
import { createRequire } from "node:module"
import sentimentNegators from "sentiment/languages/en/negators.json" with { type: "json" }
import { mergeLabels, REVIEW_EMOJI, scored } from "./word-lists.ts"

/** Curly apostrophes as straight ones, which is how AFINN writes `don't`. */
export function normaliseEnglish(word: string): string {
  return word.replaceAll("’", "'")
}

/** Required, not imported: `sentiment` adds its emoji to this same object, which an imported JSON module forbids. */
export const AFINN_LABELS: Record<string, number> = createRequire(import.meta.url)(
  "sentiment/languages/en/labels.json",
)

export const SENTIMENT_NEGATORS = Object.keys(sentimentNegators)
/** `sentiment`'s, and the other negatives of English, `no` and `without` among them (`no problems`). */
export const NEGATORS = [
  ...SENTIMENT_NEGATORS,
  ..."no never nothing nobody none neither nor without cannot couldn't wouldn't shouldn't didn't".split(" "),
  ..."wasn't weren't aren't hasn't haven't hadn't".split(" "),
]

/**
 * This project's list (MIT), written for issue 19 from the vocabulary of short reviews of shops, deliveries, apps,
 * restaurants, banks and travel: complaints about defects, delays, rudeness and money, and the praise words of
 * service. It wins over AFINN. Scores follow AFINN: ±1 mild, ±2 clear, ±3 strong.
 */
export const REVIEW_WORDS = scored([
  [-3, "trash sucked shoddy shambolic"],
  [-3, "unusable defective inedible mould mold filthy stench cockroaches bedbugs scammers scam ripoff"],
  [-3, "rubbish garbage junk ruined shambles rip-off extortionate double-charged bricked rotten mouldy"],
  [-3, "moldy cockroach poisoning nightmare abysmal scammed shady sketchy robbed gouging"],
  [-2, "subpar half-baked janky naff faff gutted tacky overhyped letdown let-down"],
  [-2, "late delayed delay slow broken broke crashes crashed crash crashing freezes buggy bug bugs glitch"],
  [-2, "glitchy laggy faulty damaged squashed smashed leaking leaked spilled torn ripped faded expired"],
  [-2, "stale soggy burnt undercooked overcooked lukewarm oversalted bland gristle outdated drains"],
  [-2, "uninstalled vanished cancelled canceled missing lost damp smelly noisy stuffy cramped rudely"],
  [-2, "unhelpful ignored rip overpriced overcharged meh meagre confusing fault unprofessional incompetent"],
  [-2, "mess chaotic overcrowded grimy musty stained shabby tatty run-down spam popups lags crashy"],
  [-2, "disconnects unreliable flimsy cheaply poorly incorrect errors failure denied dismissive"],
  [-2, "condescending delays overdue greasy tasteless watery rubbery rats mice ghosted unanswered"],
  [-2, "underwhelming"],
  [-2, "overrated cracked scratched dented leaks peeling shrunk shrank frayed wobbly rattles squeaks"],
  [-2, "overheats"],
  [-2, "overheating unresponsive misled lies fined unfriendly yelled shouted mediocre joke froze beware"],
  [-2, "unfortunately clunky surcharge"],
  [-1, "slowly waited waiting queue queues swallowed sticky smelled noise pushed pricey expensive fee fees"],
  [-1, "crowded dusty hidden ads adverts lag closed stopped declined forever ages postponed raw chewy dry"],
  [-1, "salty sour hair instead pending chased chasing escalated rescheduled oily tough flies ants buzzing"],
  [-1, "locked average hassle tiny steep hiked"],
  [1, "legit quaint"],
  [1, "juicy crispy sorted fixed solved decent quick quickly fast instant okay ok simple quiet reasonable"],
  [1, "transparent bonus discount upgrade upgraded complimentary replaced explained"],
  [2, "cracking ace dependable must-have must-try worthwhile value-for-money"],
  [2, "professional professionally knowledgeable efficient efficiently prompt promptly speedy swift"],
  [2, "hassle-free effortless user-friendly sturdy durable spacious roomy tidy flavourful flavorful hearty"],
  [2, "bargain accommodating courteous patiently thoughtful thoughtfully resolved intuitive convenient"],
  [2, "handy slick smooth punctual attentive welcoming cosy cozy tasty affordable solid highlight comfy"],
  [2, "refunded thanks helped compensated patient skilled expert exceptional phenomenal incredible gorgeous"],
  [2, "spot-on first-rate legend yay life-saver treat genius pleasantly smoothly"],
  [3, "fab chuffed brill stellar"],
  [3, "seamless immaculate pristine yummy scrumptious mouth-watering gem faultless impeccable top-notch"],
  [3, "first-class five-star flawlessly flawless priceless heavenly"],
])

/**
 * What a service is expected to do or give: scored only when negated (`never arrived`, `no refund`,
 * `hasn't worked`, `not very`).
 */
export const NEGATED_ONLY = scored([
  [1, "call called explanation warning information apologise apologize very sleep sign open opens start"],
  [1, "starts charge charges turn turned apologised apologized"],
  [2, "work works worked working arrive arrived arrives answer answered reply replied respond responded"],
  [2, "refund showed got get received receive delivered load loads"],
])

/** Words AFINN signs that say nothing about how good a thing was in a review: the things themselves. */
export const NEUTRAL_IN_REVIEWS = "support top quality promised kind interest increase".split(" ")

/** What follows them is the conclusion: `tasty, but the service was awful`. */
export const CONTRASTS = ["but", "however"]

export const ENGLISH = {
  normalise: normaliseEnglish,
  labels: mergeLabels(
    [AFINN_LABELS, REVIEW_WORDS, NEGATED_ONLY],
    [...NEGATORS, ...NEUTRAL_IN_REVIEWS],
    normaliseEnglish,
  ),
  negators: new Set(NEGATORS),
  negationScope: 3,
  negatedOnly: new Set(Object.keys(NEGATED_ONLY)),
  emoji: REVIEW_EMOJI,
  bareNegators: new Set(NEGATORS.filter((negator) => negator !== "without")),
  contrasts: new Set(CONTRASTS),
  unscoredQuestions: true,
  verdictWeight: 2,
}
