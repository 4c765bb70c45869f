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
  /** Negatives in all but form: `barely warm`, `hardly any queues`, `zero issues`. */
  ..."barely hardly zero".split(" "),
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
  [-3, "counterfeit knockoff knock-off doa tampered rancid diarrhea diarrhoea vomited reeks reeked stinks"],
  [-3, "unauthorised unauthorized incompetence"],
  [-3, "robbery manhandled humiliating"],
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
  [-2, "undelivered misdelivered chucked crumpled squished soaked excuses runaround stonewalled fobbed"],
  [-2, "uninstall uninstalling paywall paywalled bloatware cluttered unintuitive counterintuitive nagging"],
  [-2, "spammy spammed intrusive downgrade downgraded nerfed congealed limp mushy flavourless flavorless"],
  [-2, "microwaved skimpy measly miserly meager penalised penalized robotic scripted bureaucracy"],
  [-2, "hoops lumpy overbooked stranded mildew touristy photoshopped surly snotty grumpy impolite ignoring"],
  [-2, "patronising patronizing untrained understaffed short-staffed disorganised disorganized snapped tore"],
  [-2, "unglued pilling bobbling discoloured discolored rusted rusty corroded leaky crooked scratchy dies"],
  [-2, "slowest dirtiest crammed battered paper-thin copy-paste nags bureaucratic"],
  [-2, "blister blisters imitation chipped scuffed scuffs stain stains unreachable uncontactable overdone"],
  [-2, "underdone wilted bruised overripe fiddly tedious convoluted flung mislaid mishandled compromised"],
  [-2, "cloying double-booked swore"],
  [-1, "slowly waited waiting queue queues swallowed sticky smelled noise pushed pricey expensive fee fees"],
  [-1, "crowded dusty hidden ads adverts lag closed stopped declined forever ages postponed raw chewy dry"],
  [-1, "salty sour hair instead pending chased chasing escalated rescheduled oily tough flies ants buzzing"],
  [-1, "locked average hassle tiny steep hiked"],
  [-1, "issue issues frozen deleted deleting removed upsell upselling reheated dated bumped diverted loud"],
  [-1, "smelt wet cold loose bot chatbot paperwork attitude silence slower pricier logged wish charged"],
  [-1, "fuss drama hiccup hiccups clutter gimmick gimmicks keeps"],
  [-1, "odd"],
  [-2, "ominous waste"],
  [-1, "sting smell"],
  [-1, "stings itch itches clumped complicated freezing kicked tossed thrown mosquitoes"],
  [1, "legit quaint"],
  [1, "juicy crispy sorted fixed solved decent quick quickly fast instant okay ok simple quiet reasonable"],
  [1, "transparent bonus discount upgrade upgraded complimentary replaced explained"],
  [1, "value early exactly fits crisp fluffy moist freshly homemade filling airy scenic upfront cheaper"],
  [1, "easier faster quicker fine actually"],
  [1, "unharmed securely neatly carefully fluid modern lightweight essential creamy buttery crunchy zesty"],
  [1, "tangy ripe snug posh walkable highly lowest luck discounted strong"],
  [2, "cracking ace dependable must-have must-try worthwhile value-for-money"],
  [2, "professional professionally knowledgeable efficient efficiently prompt promptly speedy swift"],
  [2, "hassle-free effortless user-friendly sturdy durable spacious roomy tidy flavourful flavorful hearty"],
  [2, "bargain accommodating courteous patiently thoughtful thoughtfully resolved intuitive convenient"],
  [2, "handy slick smooth punctual attentive welcoming cosy cozy tasty affordable solid highlight comfy"],
  [2, "refunded thanks helped compensated patient skilled expert exceptional phenomenal incredible gorgeous"],
  [2, "spot-on first-rate legend yay life-saver treat genius pleasantly smoothly"],
  [2, "kind kindly considerate hospitable informative straightforward painless stress-free accurate"],
  [2, "accurately trustworthy relaxing authentic picturesque speedily exceeded exceeds fave fav faves"],
  [2, "easiest comfiest cleanest friendliest fastest quickest smoothest freshest cheapest go-to"],
  [2, "undamaged snappy timely sleek stylish luxurious reimbursed"],
  [3, "fab chuffed brill stellar"],
  [3, "seamless immaculate pristine yummy scrumptious mouth-watering gem faultless impeccable top-notch"],
  [3, "first-class five-star flawlessly flawless priceless heavenly"],
  [3, "succulent seamlessly breathtaking tastiest nicest finest game-changer"],
  [3, "indispensable life-changing"],
])

/**
 * Expressions whose sense is not the sum of their words (this project's, MIT), from the same six domains: verdicts
 * (`never again`, `would buy again`, `5 stars`), idioms of complaint and praise (`fell apart`, `on hold`,
 * `above and beyond`), and the uses of a scored word that mean nothing (`kind of`, `as well`). Negated as a word
 * is: `won't be back`, `not as described`.
 */
export const REVIEW_PHRASES = scored(
  [
    [-3, "never again, waste of money, waste of time, down the drain, save your money, stay away"],
    [-3, "steer clear, avoid at all costs, do not buy, don't buy, don't bother, do not bother, ripped off"],
    [-3, "rip off, fell apart, falls apart, falling apart, still waiting, thanks for nothing, zero stars"],
    [-3, "0 stars, dead on arrival, stopped working, quit working, charged twice, double charged"],
    [-3, "daylight robbery, first and last, want my money back, charged me twice, not fit for purpose"],
    [-3, "food poisoning, threw up, tourist trap, false advertising, cash grab, money grab, in pieces"],
    [-2, "let down, let me down, let us down, hung up, on hold, yet to, came apart, broke down, no show"],
    [-2, "1 star, one star, hidden fees, hidden charges, out of pocket, out of order, out of date, gone off"],
    [-2, "logs me out, logged me out, force closes, force close, blank screen, black screen, battery drain"],
    [-2, "locked out, red tape, thin walls, nothing like, feels cheap, cheap plastic, came loose, fell off"],
    [-2, "run around, fob off, fine print, love that for me, beat up, beaten up, in your face"],
    [-2, "took forever, takes forever, taking forever, went silent, radio silence, left on read"],
    [-2, "pillar to post, passed around, bounced around, asked for a refund, want a refund, gave up"],
    [-2, "give up, giving up"],
    [-2, "had high hopes, such a shame, hold music"],
    [-2, "copy and paste, canned response, expected more, expected better, no idea"],
    [-1, "more like, 2 stars, two stars, to this day, in a row, whole time, all night, ran out of"],
    [-1, "run out of, sent back, send it back, sending it back, return it, returning it, nothing special"],
    [-2, "for no reason, straight to voicemail, no hot water, no wifi, no towels, no air conditioning"],
    [-2, "no aircon"],
    [-2, "left outside, left it outside, i was home, was home all day, were home all day"],
    [-1, "looking into it, hit or miss"],
    [-2, "to be desired, be warned"],
    [1, "late checkout, late check-out, early check-in"],
    [0, "good luck, outstanding balance, drop off, dropped off, drop-off"],
    [2, "a steal"],
    [3, "gold standard, can't thank, cannot thank, couldn't thank, can't praise, can't say enough"],
    [1, "as requested, like i asked, as asked, in under, in seconds, out of the rain"],
    [-1, "out of stock, had to, could have, could've, should have, should've, at least, paid extra"],
    [0, "kind of, as well, 3 stars, three stars, not sure, safe place, fraud alert, fraud team"],
    [0, "fraud department, customer care, good to know"],
    [1, "same day, next day, in minutes, within minutes, straight away, right away, sorted out, for free"],
    [1, "free of charge, no charge, true to size, from scratch"],
    [2, "on time, as described, as pictured, as advertised, in no time, can't wait, can't beat, my go to"],
    [2, "worth the money, worth the wait, worth the price, well worth, well done, well made, well packed"],
    [2, "well packaged, packed well, keep it up, hats off, looked after, took care of, be back, buy again"],
    [2, "order again, stay again, use again, book again, visit again, buying again, ordering again"],
    [2, "booking again, without being asked, no questions asked, no extra charge, at no charge"],
    [2, "no extra cost, at no extra cost, without a scratch, 4 stars, four stars, value for money"],
    [2, "beyond expectations, well spent, worth a visit, will go back, would go back, will come back"],
    [2, "would come back, still going strong, going strong, does the job, does what it says, real human"],
    [2, "real person, how it should be, as it should be, the way it should be, bought another"],
    [2, "ordered another"],
    [2, "buying another, ordering another, bought a second, ordered a second, didn't charge me"],
    [2, "didn't charge us"],
    [2, "lost nothing, be regulars, bang on, on the dot, ahead of time, ahead of schedule"],
    [2, "earlier than expected"],
    [2, "sooner than expected, quicker than expected, fit for purpose"],
    [2, "bang for the buck, bang for your buck, came through, tipped extra, the real thing, the real deal"],
    [3, "worth every penny, game changer, life saver, above and beyond, extra mile, top notch, spot on"],
    [3, "second to none, made my day, couldn't do enough, could not do enough, 5 stars, five stars, 10 10"],
    [3, "money well spent, changed my life, life changing, gold star, haven't looked back"],
    [3, "hidden gem, never looked back, can't ask for more, couldn't ask for more, couldn't ask for better"],
    [3, "can't go wrong, cannot go wrong, made the trip, made our trip, made our stay, made the whole trip"],
  ],
  ", ",
)

/**
 * What a service is expected to do or give: scored only when negated (`never arrived`, `no refund`,
 * `hasn't worked`, `not very`).
 */
export const NEGATED_ONLY = scored([
  [1, "call called explanation warning information apologise apologize very sleep sign open opens start"],
  [1, "starts charge charges turn turned apologised apologized sorry apology apologies pay response notice"],
  [1, "apologises apologizes apologising apologizing reach reached"],
  [2, "work works worked working arrive arrived arrives answer answered reply replied respond responded"],
  [2, "refund showed got get received receive delivered load loads"],
])

/** Words AFINN signs that say nothing about how good a thing was in a review: the things themselves. */
export const NEUTRAL_IN_REVIEWS = [
  ..."support top quality promised interest increase savings gift offline grey gray legal alert".split(" "),
  /** Said in passing, not judging: `please fix it`, `straight to voicemail`, `I hope they fix it`. */
  ..."please want hope hoping straight yes share matter like alone wow free".split(" "),
  /** What a reviewer felt before being won over: `I was skeptical, but…`, `was nervous ordering online`. */
  ..."nervous skeptical sceptical worried hesitant dubious apprehensive doubts concerned".split(" "),
  /**
   * Found by reading AFINN's signed words, not the reviews: things and plain narration in a review (`hotel lobby`,
   * `nuts` in a dish, `a withdrawal`, `United`, `bus stop`, `packing slip`, `an ice-cream scoop`).
   */
  ..."aboard accept accepts accepted active allergic certain chance chances cleared dear debt".split(" "),
  ..."demand demands demanded determined disability disabilities emergency ensure entitled escape".split(" "),
  ..."escapes fitness gold grand granted guarantee important importance increased increases".split(" "),
  ..."invite join launched leading lobby mandatory matters novel nuts prevent prevented prevents".split(" "),
  ..."promises rainy retained retreat rise rises rose scoop sentence sentences settlement shared".split(" "),
  ..."shares slash slashed slip spirit spirits stall stop stops startling tops unbelievable".split(" "),
  ..."united unified urgent verdict vision vitamin wishes withdrawal yeah".split(" "),
]

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
  negationScope: 4,
  negatedOnly: new Set(Object.keys(NEGATED_ONLY)),
  emoji: REVIEW_EMOJI,
  /** `no` is left out as `without` is: `no cash, cards only` and `a room with no stairs` describe. */
  bareNegators: new Set(NEGATORS.filter((negator) => negator !== "without" && negator !== "no")),
  contrasts: new Set(CONTRASTS),
  phrases: REVIEW_PHRASES,
  unscoredQuestions: true,
  unscoredBareNegationWhenAsking: true,
  verdictWeight: 2,
  quotation: -2,
}
