import { main } from "@bulwark/server";
import { identityModule } from "./module.js";

await main(identityModule);
