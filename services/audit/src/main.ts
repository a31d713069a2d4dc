import { main } from "@bulwark/server";
import { auditModule } from "./module.js";

await main(auditModule);
