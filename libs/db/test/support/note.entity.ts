import { defineEntity } from "@mikro-orm/core";

/** A tenant-owned row used to prove row-level security end to end. */
export const Note = defineEntity({
  name: "Note",
  tableName: "notes",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string(),
    body: p.text(),
  }),
});
