import { main } from "@bulwark/server";
import { keysModule } from "./module.js";

await main(keysModule);
