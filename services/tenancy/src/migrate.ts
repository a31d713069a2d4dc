import { migrateMain } from "@bulwark/server";
import { tenancyModule } from "./module.js";

await migrateMain(tenancyModule);
