import { migrateMain } from "@bulwark/server";
import { identityModule } from "./module.js";

await migrateMain(identityModule);
