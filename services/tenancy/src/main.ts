import { main } from "@bulwark/server";
import { tenancyModule } from "./module.js";

await main(tenancyModule);
