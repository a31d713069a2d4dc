import { migrateMain } from "@bulwark/server";
import { complianceModule } from "./module.js";

await migrateMain(complianceModule);
