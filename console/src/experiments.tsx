import { useEffect, useMemo, useState } from "preact/hooks";
import type { Experiment } from "../../gen/ts/assignment/v1/types_pb.js";
import { ExperimentStatus } from "../../gen/ts/assignment/v1/types_pb.js";
import { CreateExperimentRequestSchema, type ListExperimentsResponse } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { describeError, experiments, type Role } from "./api.js";
import { pct, statusName } from "./format.js";
import { SrmBadge } from "./srm.js";

const PAGE = 100;

/** Targeting arrives with the targeting work: offered when the server's CreateExperimentRequest takes a condition. */
const TAKES_CONDITION = CreateExperimentRequestSchema.fields.some((f) => f.name === "condition");

/** "a:50,b:50" or "a 50, b 50" -> variants with weights in basis points (percentages). */
function parseVariants(text: string): { key: string; weight: number }[] {
  return text
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const [key = "", w = ""] = part.split(/[:\s]+/);
      return { key, weight: Math.round(Number(w) * 100) };
    });
}

/** The list asked for while the token's role is still being found (main.tsx), used once by the first list. */
let prefetched: Promise<ListExperimentsResponse> | null = null;

/** Starts loading the list at once, beside the role probe: the first page waits for one round trip, not two. */
export function prefetchExperiments(): void {
  prefetched = experiments.listExperiments({});
  prefetched.catch(() => {}); // asked again when the page uses it
}

function CreateExperiment({ onCreated }: { onCreated: () => void }) {
  const [key, setKey] = useState("");
  const [unitType, setUnitType] = useState("user_id");
  const [variants, setVariants] = useState("control:50, treatment:50");
  const [tags, setTags] = useState("");
  const [description, setDescription] = useState("");
  const [condition, setCondition] = useState("");
  const [message, setMessage] = useState<{ error: boolean; text: string } | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      const res = await experiments.createExperiment({
        key: key.trim(),
        unitType: unitType.trim(),
        variants: parseVariants(variants),
        tags: tags
          .split(",")
          .map((t) => t.trim())
          .filter(Boolean),
        description,
        ...(TAKES_CONDITION && condition.trim() ? { condition: condition.trim() } : {}),
      });
      setMessage({ error: false, text: `Created ${res.experiment?.key} (draft).` });
      setKey("");
      onCreated();
    } catch (err) {
      setMessage({ error: true, text: describeError(err) });
    }
  };
  return (
    <details class="panel">
      <summary>New experiment</summary>
      <form onSubmit={submit} class="grid-form">
        <label for="new-key">Key</label>
        <input id="new-key" required value={key} onInput={(e) => setKey(e.currentTarget.value)} placeholder="checkout-button" />
        <label for="new-unit-type">Unit type</label>
        <input id="new-unit-type" value={unitType} onInput={(e) => setUnitType(e.currentTarget.value)} />
        <label for="new-variants">Variants (key:percent, …)</label>
        <input id="new-variants" value={variants} onInput={(e) => setVariants(e.currentTarget.value)} />
        <label for="new-tags">Tags (comma separated)</label>
        <input id="new-tags" value={tags} onInput={(e) => setTags(e.currentTarget.value)} />
        <label for="new-description">Description</label>
        <input id="new-description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        {TAKES_CONDITION && (
          <>
            <label for="new-condition">Targeting condition (CEL, empty: every unit)</label>
            <input
              id="new-condition"
              value={condition}
              onInput={(e) => setCondition(e.currentTarget.value)}
              placeholder='attributes.country == "US"'
            />
          </>
        )}
        <span />
        <button type="submit">Create experiment</button>
      </form>
      {message && (
        <p role={message.error ? "alert" : "status"} class={message.error ? "error" : "ok"}>
          {message.text}
        </p>
      )}
    </details>
  );
}

export function ExperimentsPage({ role }: { role: Role }) {
  const [list, setList] = useState<Experiment[] | null>(null);
  const [error, setError] = useState("");
  const [search, setSearch] = useState("");
  const [status, setStatus] = useState("");
  const [tag, setTag] = useState("");
  const [namespace, setNamespace] = useState("");
  const [page, setPage] = useState(0);
  const load = () => {
    // A prefetch that failed (a token since replaced at sign-in) is asked again.
    const listing = prefetched ? prefetched.catch(() => experiments.listExperiments({})) : experiments.listExperiments({});
    prefetched = null;
    return listing
      .then((r) => {
        setList(r.experiments);
        (window as { consoleListedAt?: number }).consoleListedAt = performance.now();
      })
      .catch((err) => setError(describeError(err)));
  };
  useEffect(() => {
    load();
  }, []);
  const tags = useMemo(() => [...new Set((list ?? []).flatMap((e) => e.tags))].sort(), [list]);
  const namespaces = useMemo(() => [...new Set((list ?? []).map((e) => e.namespace).filter(Boolean))].sort(), [list]);
  const shown = useMemo(() => {
    const q = search.trim().toLowerCase();
    return (list ?? []).filter(
      (e) =>
        (!status || statusName(e.status) === status) &&
        (!tag || e.tags.includes(tag)) &&
        (!namespace || e.namespace === namespace) &&
        (!q || e.key.includes(q) || e.description.toLowerCase().includes(q) || e.tags.some((t) => t.includes(q))),
    );
  }, [list, search, status, tag, namespace]);
  useEffect(() => setPage(0), [search, status, tag, namespace]);
  const pages = Math.max(1, Math.ceil(shown.length / PAGE));
  const rows = shown.slice(page * PAGE, page * PAGE + PAGE);
  return (
    <section aria-labelledby="experiments-title">
      <h1 id="experiments-title">Experiments</h1>
      {role === "admin" && <CreateExperiment onCreated={load} />}
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <div>
          <label for="filter-search">Search</label>
          <input
            id="filter-search"
            type="search"
            value={search}
            onInput={(e) => setSearch(e.currentTarget.value)}
            placeholder="key, tag, description"
          />
        </div>
        <div>
          <label for="filter-status">Status</label>
          <select id="filter-status" value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
            <option value="">any</option>
            {["draft", "running", "paused", "stopped"].map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </div>
        <div>
          <label for="filter-tag">Tag</label>
          <select id="filter-tag" value={tag} onChange={(e) => setTag(e.currentTarget.value)}>
            <option value="">any</option>
            {tags.map((t) => (
              <option value={t}>{t}</option>
            ))}
          </select>
        </div>
        <div>
          <label for="filter-namespace">Namespace</label>
          <select id="filter-namespace" value={namespace} onChange={(e) => setNamespace(e.currentTarget.value)}>
            <option value="">any</option>
            {namespaces.map((n) => (
              <option value={n}>{n}</option>
            ))}
          </select>
        </div>
      </form>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {list === null && !error && <p class="loading">Loading…</p>}
      {list !== null && (
        <>
          <p class="count" aria-live="polite">
            {shown.length} of {list.length} experiments
          </p>
          <div class="table-wrap">
            <table class="experiments">
              <thead>
                <tr>
                  <th scope="col">Key</th>
                  <th scope="col">Status</th>
                  <th scope="col">Unit type</th>
                  <th scope="col">Split</th>
                  <th scope="col">Rollout</th>
                  <th scope="col">Namespace</th>
                  <th scope="col">Tags</th>
                  <th scope="col">SRM</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((e) => (
                  <tr key={e.key}>
                    <td>
                      <a href={`#/experiments/${encodeURIComponent(e.key)}`}>{e.key}</a>
                    </td>
                    <td>
                      <span class={`status status-${statusName(e.status)}`}>{statusName(e.status)}</span>
                    </td>
                    <td>{e.unitType}</td>
                    <td>{e.variants.map((v) => `${v.key} ${pct(v.weight)}`).join(" / ")}</td>
                    <td>{pct(e.rollout)}</td>
                    <td>{e.namespace ? `${e.namespace} (${e.segments})` : "—"}</td>
                    <td>
                      {e.tags.map((t) => (
                        <span class="tag">{t}</span>
                      ))}
                    </td>
                    <td>
                      {e.status === ExperimentStatus.RUNNING || e.status === ExperimentStatus.PAUSED ? (
                        <SrmBadge experimentKey={e.key} version={e.version} />
                      ) : (
                        "—"
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {pages > 1 && (
            <nav class="pager" aria-label="Pages">
              <button type="button" disabled={page === 0} onClick={() => setPage(page - 1)}>
                Previous
              </button>
              <span>
                Page {page + 1} of {pages}
              </span>
              <button type="button" disabled={page + 1 >= pages} onClick={() => setPage(page + 1)}>
                Next
              </button>
            </nav>
          )}
        </>
      )}
    </section>
  );
}
