import { migrateMain } from "@bulwark/server";
import { auditModule } from "./module.js";

await migrateMain(auditModule);
