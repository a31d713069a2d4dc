/** The master keyring and the key-provider interface behind it. */
export * from "./provider.js";
export * from "./keyring.js";
