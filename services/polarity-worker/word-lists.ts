// The shape of this project's word lists (english.ts, russian.ts): words grouped by score, and how several
// lists become one table of labels for `sentiment`.

/**
 * `[[-2, "late slow"], [3, "superb"]]` → `{ late: -2, slow: -2, superb: 3 }`: a list reads by score. Phrases are
 * listed with another `separator` (`[[-3, "never again, waste of money"]]`).
 */
export function scored(groups: [score: number, words: string][], separator = " "): Record<string, number> {
  return Object.fromEntries(
    groups.flatMap(([score, words]) => words.split(separator).map((word) => [word, score])),
  )
}

/**
 * The lists merged, later ones winning; the `unscored` words (operators, things neutral in reviews) are removed,
 * looked up by the key `normalise` gives them.
 */
export function mergeLabels(
  lists: Record<string, number>[],
  unscored: string[],
  normalise: (word: string) => string,
): Record<string, number> {
  const labels: Record<string, number> = Object.assign({}, ...lists)
  for (const word of unscored) delete labels[normalise(word)]
  return labels
}

/**
 * This project's emoji scores (MIT), over `sentiment`'s (Emoji Sentiment Ranking, by how tweets used them): the
 * emoji of reviews it lacks (`🙄`, `🤬`, `🤮`, `🔥`), and stronger signs where a review means them more plainly
 * (`👎`, `😡`, `💩`), and the reviewer's signs that tweets meant otherwise (`🐌` slow, +3 there, `🐛` a bug).
 */
export const REVIEW_EMOJI = scored([
  [-3, "🤬 🤮 💩 😡 🪳"],
  [-2, "🙄 🤢 😢 🤦 👎 😠 😤 😞 😔 😖 😣 😓 😩 😫 😭 💔 🤡 ❌ 🥱 🐌 🐛 🗑 🙁 😟"],
  [-1, "🙃 🥴 🤨 😬 ⚠ 🐢 ⏳ ⌛ 🫠 😐 😑 🦟 😵"],
  [2, "🔥 💯 🥰 👍 👌 🙂 🤩 😻 💪 🤤 🤗 🥹 🤌"],
  [3, "😍 ❤ 😋 🥳 😊 🧡 🤍 🖤"],
])
