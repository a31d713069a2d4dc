import { migrateMain } from "@bulwark/server";
import { keysModule } from "./module.js";

await migrateMain(keysModule);
