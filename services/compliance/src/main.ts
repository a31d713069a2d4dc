import { main } from "@bulwark/server";
import { complianceModule } from "./module.js";

await main(complianceModule);
