import { useState } from "preact/hooks";
import { AssignUnitRequestSchema, type AssignUnitResponse } from "../../gen/ts/assignment/v1/assignment_service_pb.js";
import { Reason } from "../../gen/ts/assignment/v1/types_pb.js";
import { assignments, describeError, experiments, type Role } from "./api.js";
import { layerName, REASON_WORDS, reasonName } from "./format.js";

/** Attributes arrive with targeting: offered when the server's AssignUnitRequest carries them. */
const HAS_ATTRIBUTES = AssignUnitRequestSchema.fields.some((f) => f.name === "attributes");

export function LookupPage({ role }: { role: Role }) {
  const [unitType, setUnitType] = useState("user_id");
  const [unitId, setUnitId] = useState("");
  const [attributes, setAttributes] = useState("{}");
  const [result, setResult] = useState<AssignUnitResponse | null>(null);
  const [message, setMessage] = useState<{ error: boolean; text: string } | null>(null);
  const [overrideVariant, setOverrideVariant] = useState<Record<string, string>>({});
  const [variants, setVariants] = useState<Record<string, string[]>>({});
  const lookUp = async () => {
    setMessage(null);
    try {
      const request: Record<string, unknown> = {
        units: { [unitType.trim()]: unitId },
        // A dry run: nothing is stored, nobody is enrolled; explain says which rule decided.
        options: { dryRun: true, explain: true, includeParams: true },
      };
      if (HAS_ATTRIBUTES) request.attributes = JSON.parse(attributes || "{}");
      const r = await assignments.assignUnit(request);
      setResult(r);
      const list = await experiments.listExperiments({});
      setVariants(Object.fromEntries(list.experiments.map((e) => [e.key, e.variants.map((v) => v.key)])));
    } catch (err) {
      setResult(null);
      setMessage({
        error: true,
        text: err instanceof SyntaxError ? `Attributes must be a JSON object: ${err.message}` : describeError(err),
      });
    }
  };
  const act = async (what: string, call: () => Promise<unknown>) => {
    try {
      await call();
      await lookUp();
      setMessage({ error: false, text: `${what}: done.` });
    } catch (err) {
      setMessage({ error: true, text: `${what}: ${describeError(err)}` });
    }
  };
  const canOverride = role === "admin" || role === "operator";
  return (
    <section aria-labelledby="lookup-title">
      <h1 id="lookup-title">Unit lookup</h1>
      <p class="help">
        Every running or paused experiment's answer for one unit, with the rule that decided it. A dry run: the lookup never enrols or
        stores anyone.
      </p>
      <form
        class="grid-form"
        onSubmit={(e) => {
          e.preventDefault();
          lookUp();
        }}
      >
        <label for="lookup-type">Unit type</label>
        <input id="lookup-type" value={unitType} onInput={(e) => setUnitType(e.currentTarget.value)} />
        <label for="lookup-id">Unit id</label>
        <input id="lookup-id" required value={unitId} onInput={(e) => setUnitId(e.currentTarget.value)} />
        <label for="lookup-attributes">Attributes (JSON)</label>
        {HAS_ATTRIBUTES ? (
          <textarea id="lookup-attributes" rows={2} value={attributes} onInput={(e) => setAttributes(e.currentTarget.value)} />
        ) : (
          <p id="lookup-attributes" class="help">
            This server takes no attributes yet (they come with targeting).
          </p>
        )}
        <span />
        <button type="submit">Look up</button>
      </form>
      {message && (
        <p role={message.error ? "alert" : "status"} class={message.error ? "error" : "ok"}>
          {message.text}
        </p>
      )}
      {result && (
        <div class="table-wrap">
          <table data-testid="lookup-result">
            <caption>
              {result.assignments.length} experiments for {unitType} {unitId}
            </caption>
            <thead>
              <tr>
                <th scope="col">Experiment</th>
                <th scope="col">Variant</th>
                <th scope="col">Why</th>
                <th scope="col">Explanation</th>
                {canOverride && <th scope="col">Override</th>}
              </tr>
            </thead>
            <tbody>
              {result.assignments.map((a) => {
                const x = a.explanation;
                const chosen = overrideVariant[a.experimentKey] ?? variants[a.experimentKey]?.[0] ?? "";
                return (
                  <tr>
                    <td>
                      <a href={`#/experiments/${encodeURIComponent(a.experimentKey)}`}>{a.experimentKey}</a>
                    </td>
                    <td>
                      <strong>{a.variantKey || "—"}</strong>
                      {a.enrolled ? " (enrolled)" : " (not enrolled)"}
                    </td>
                    <td>
                      <code>{reasonName(a.reason)}</code>: {REASON_WORDS[a.reason] ?? ""}
                    </td>
                    <td>
                      {x &&
                        `variant bucket ${x.variantBucket}, rollout bucket ${x.rolloutBucket}${x.segment !== undefined ? `, segment ${x.segment}` : ""}, from ${layerName(x.layer)}`}
                    </td>
                    {canOverride && (
                      <td>
                        {a.reason === Reason.OVERRIDE ? (
                          <button
                            type="button"
                            onClick={() =>
                              act(`Clear the override of ${a.experimentKey}`, () =>
                                experiments.clearOverrides({ experimentKey: a.experimentKey, unitIds: [unitId] }),
                              )
                            }
                          >
                            Clear override
                          </button>
                        ) : (
                          <span class="inline">
                            <label class="sr-only" for={`ov-${a.experimentKey}`}>
                              Override variant for {a.experimentKey}
                            </label>
                            <select
                              id={`ov-${a.experimentKey}`}
                              value={chosen}
                              onChange={(e) => setOverrideVariant({ ...overrideVariant, [a.experimentKey]: e.currentTarget.value })}
                            >
                              {(variants[a.experimentKey] ?? []).map((v) => (
                                <option value={v}>{v}</option>
                              ))}
                            </select>
                            <button
                              type="button"
                              onClick={() =>
                                act(`Override ${a.experimentKey}`, () =>
                                  experiments.setOverrides({ experimentKey: a.experimentKey, overrides: [{ unitId, variantKey: chosen }] }),
                                )
                              }
                            >
                              Set override
                            </button>
                          </span>
                        )}
                      </td>
                    )}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
