import { toJsonString } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { useEffect, useState } from "preact/hooks";
import type { Change } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { describeError, experiments } from "./api.js";
import { when } from "./format.js";

const show = (v: Value | undefined): string => (v === undefined ? "—" : toJsonString(ValueSchema, v));

export function HistoryPage() {
  const [objectKey, setObjectKey] = useState("");
  const [tokenName, setTokenName] = useState("");
  const [changes, setChanges] = useState<Change[]>([]);
  const [next, setNext] = useState("");
  const [error, setError] = useState("");
  const load = async (pageToken: string) => {
    setError("");
    try {
      const r = await experiments.listChanges({ objectKey: objectKey.trim(), tokenName: tokenName.trim(), pageSize: 50, pageToken });
      setChanges(pageToken ? [...changes, ...r.changes] : r.changes);
      setNext(r.nextPageToken);
    } catch (err) {
      setError(describeError(err));
    }
  };
  useEffect(() => {
    load("");
  }, []);
  return (
    <section aria-labelledby="history-title">
      <h1 id="history-title">History</h1>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          load("");
        }}
      >
        <div>
          <label for="history-object">Object key</label>
          <input id="history-object" value={objectKey} onInput={(e) => setObjectKey(e.currentTarget.value)} />
        </div>
        <div>
          <label for="history-token">Token name</label>
          <input id="history-token" value={tokenName} onInput={(e) => setTokenName(e.currentTarget.value)} />
        </div>
        <button type="submit">Filter</button>
      </form>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <ol class="changes">
        {changes.map((c) => (
          <li class="panel">
            <p>
              <strong>{c.tokenName}</strong> ({c.tokenRole}) · <code>{c.rpc}</code> · {c.objectKind} <strong>{c.objectKey}</strong>
              {c.versionAfter !== undefined && ` · version ${c.versionBefore ?? "—"} → ${c.versionAfter}`} · <time>{when(c.time)}</time>
            </p>
            {c.fields.length > 0 && (
              <table>
                <thead>
                  <tr>
                    <th scope="col">Field</th>
                    <th scope="col">Before</th>
                    <th scope="col">After</th>
                  </tr>
                </thead>
                <tbody>
                  {c.fields.map((f) => (
                    <tr>
                      <td>{f.field}</td>
                      <td>
                        <code>{show(f.before)}</code>
                      </td>
                      <td>
                        <code>{show(f.after)}</code>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </li>
        ))}
      </ol>
      {next && (
        <button type="button" onClick={() => load(next)}>
          Older changes
        </button>
      )}
    </section>
  );
}
