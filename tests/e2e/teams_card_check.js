// Validate Adaptive Cards with the official parser (npm `adaptivecards`, pinned in package.json).
//
// stdin: one card object, or a JSON array of cards. Each is parsed for Adaptive Cards 1.4
// with a SerializationContext (parse events: unknown elements or actions, elements newer than
// 1.4, bad values) and then checked with validateProperties() (missing required properties,
// duplicate ids ...). Any event of either kind is an error: it is printed as JSON on stderr
// and the exit status is 1. Exit 0 prints the number of cards checked.
//
// The bundled dist/adaptivecards.js is used because it loads in plain node without a DOM
// (the package's lib/ entry does not resolve its own imports under node's require).
"use strict";

const path = require("path");

const root = path.resolve(__dirname, "..", "..");
const AC = require(require.resolve("adaptivecards/dist/adaptivecards.js", { paths: [root] }));

function check(card, index) {
  const problems = [];
  if (card === null || typeof card !== "object" || Array.isArray(card)) {
    return [{ card: index, phase: "input", message: "not a JSON object" }];
  }
  if (card.version !== "1.4") {
    problems.push({ card: index, phase: "input", message: `version ${card.version} is not 1.4` });
  }
  const context = new AC.SerializationContext();
  context.targetVersion = AC.Versions.v1_4;
  const parsed = new AC.AdaptiveCard();
  parsed.parse(card, context);
  for (let i = 0; i < context.eventCount; i++) {
    const e = context.getEventAt(i);
    problems.push({ card: index, phase: "parse", event: e.event, message: e.message });
  }
  for (const e of parsed.validateProperties().validationEvents) {
    problems.push({ card: index, phase: "validate", event: e.event, message: e.message });
  }
  return problems;
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  input += chunk;
});
process.stdin.on("end", () => {
  let cards;
  try {
    cards = JSON.parse(input);
  } catch (err) {
    process.stderr.write(JSON.stringify({ phase: "input", message: String(err) }) + "\n");
    process.exit(1);
  }
  if (!Array.isArray(cards)) cards = [cards];
  const problems = cards.flatMap((card, i) => check(card, i));
  for (const p of problems) process.stderr.write(JSON.stringify(p) + "\n");
  if (problems.length > 0) process.exit(1);
  process.stdout.write(`${cards.length} cards valid\n`);
});
