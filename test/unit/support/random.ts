// Moved to test/support/ so the chaos run shares it; kept here for the unit tests that import it.
export { randomInt, seededRandom } from "../../support/random.js";
