// Validate custom resources against the upstream schemas that the @kubernetes-models
// packages ship (their classes' validate() runs ajv over the CRD's OpenAPI schema).
// stdin: a JSON list of {id, module, kind, object}; stdout: a JSON list of {id, error}.
import { readFileSync } from "node:fs";

const items = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const item of items) {
  try {
    const mod = await import(item.module);
    const Model = mod[item.kind];
    if (!Model) throw new Error(`${item.module} has no model ${item.kind}`);
    new Model(item.object).validate();
    results.push({ id: item.id, error: null });
  } catch (e) {
    results.push({ id: item.id, error: String(e.message || e) });
  }
}
process.stdout.write(JSON.stringify(results));
