import { useEffect, useState } from "preact/hooks";
import type { Experiment, Namespace } from "../../gen/ts/assignment/v1/types_pb.js";
import { describeError, experiments, type Role } from "./api.js";

const COLORS = ["#2f6fdf", "#e07b39", "#3a9d5d", "#b548c6", "#c9a227", "#d64550", "#2aa5a5", "#7a5cff"];

/**
 * The segment map as a bar: each experiment's share of the namespace's segments (the server spreads
 * an allocation pseudo-randomly over the segments and reports only how many each holds), then the free ones.
 */
function SegmentMap({ ns }: { ns: Namespace }) {
  let x = 0;
  const total = ns.segments || 1;
  const parts = ns.allocations.map((a, i) => {
    const w = (a.segments / total) * 100;
    const part = { x, w, color: COLORS[i % COLORS.length]!, label: `${a.experimentKey}: ${a.segments} segments` };
    x += w;
    return part;
  });
  const description = `${ns.allocations.map((a) => `${a.experimentKey} holds ${a.segments}`).join(", ") || "no experiment holds segments"}; ${ns.freeSegments} of ${ns.segments} free`;
  return (
    <figure class="segmap">
      <svg viewBox="0 0 100 6" preserveAspectRatio="none" role="img" aria-label={description}>
        <rect x={0} y={0} width={100} height={6} fill="#e6e9ef" />
        {parts.map((p) => (
          <rect x={p.x} y={0} width={p.w} height={6} fill={p.color}>
            <title>{p.label}</title>
          </rect>
        ))}
      </svg>
      <figcaption>
        {parts.map((p) => (
          <span class="legend">
            <span class="swatch" style={{ background: p.color }} aria-hidden="true" />
            {p.label}
          </span>
        ))}
        <span class="legend">
          <span class="swatch free" aria-hidden="true" />
          free: {ns.freeSegments} of {ns.segments}
        </span>
      </figcaption>
    </figure>
  );
}

export function NamespacesPage({ role }: { role: Role }) {
  const [list, setList] = useState<Namespace[] | null>(null);
  const [exps, setExps] = useState<Experiment[]>([]);
  const [message, setMessage] = useState<{ error: boolean; text: string } | null>(null);
  const load = () => {
    experiments
      .listNamespaces({})
      .then((r) => setList(r.namespaces))
      .catch((err) => setMessage({ error: true, text: describeError(err) }));
    experiments
      .listExperiments({})
      .then((r) => setExps(r.experiments))
      .catch(() => {});
  };
  useEffect(load, []);
  const act = async (what: string, call: () => Promise<unknown>) => {
    setMessage(null);
    try {
      await call();
      setMessage({ error: false, text: `${what}: done.` });
      load();
    } catch (err) {
      setMessage({ error: true, text: `${what}: ${describeError(err)}` });
    }
  };
  const admin = role === "admin";
  return (
    <section aria-labelledby="ns-title">
      <h1 id="ns-title">Namespaces</h1>
      <p class="help">A unit is in at most one experiment of a namespace: the one holding its segment.</p>
      {message && (
        <p role={message.error ? "alert" : "status"} class={message.error ? "error" : "ok"}>
          {message.text}
        </p>
      )}
      {list === null && <p class="loading">Loading…</p>}
      {list?.length === 0 && <p>No namespaces.</p>}
      {list?.map((ns) => (
        <article class="panel" aria-labelledby={`ns-${ns.key}`}>
          <h2 id={`ns-${ns.key}`}>
            {ns.key} <small>unit type {ns.unitType}</small>
          </h2>
          <SegmentMap ns={ns} />
          {admin && (
            <>
              <ul class="allocations">
                {ns.allocations.map((a) => (
                  <li>
                    {a.experimentKey}: {a.segments} segments{" "}
                    <button
                      type="button"
                      onClick={() =>
                        act(`Release ${a.experimentKey}`, () =>
                          experiments.releaseSegments({ namespaceKey: ns.key, experimentKey: a.experimentKey }),
                        )
                      }
                    >
                      Release
                    </button>
                  </li>
                ))}
              </ul>
              <Allocate
                ns={ns}
                exps={exps.filter((e) => e.unitType === ns.unitType && (!e.namespace || e.namespace === ns.key))}
                act={act}
              />
            </>
          )}
        </article>
      ))}
    </section>
  );
}

function Allocate({
  ns,
  exps,
  act,
}: {
  ns: Namespace;
  exps: Experiment[];
  act: (what: string, call: () => Promise<unknown>) => Promise<void>;
}) {
  const [key, setKey] = useState("");
  const [count, setCount] = useState("1");
  return (
    <form
      class="inline"
      onSubmit={(e) => {
        e.preventDefault();
        act(`Allocate to ${key}`, () =>
          experiments.allocateSegments({ namespaceKey: ns.key, experimentKey: key, segments: Number(count) }),
        );
      }}
    >
      <label for={`alloc-exp-${ns.key}`}>Experiment</label>
      <select id={`alloc-exp-${ns.key}`} value={key} onChange={(e) => setKey(e.currentTarget.value)} required>
        <option value="">choose…</option>
        {exps.map((x) => (
          <option value={x.key}>{x.key}</option>
        ))}
      </select>
      <label for={`alloc-n-${ns.key}`}>Segments</label>
      <input
        id={`alloc-n-${ns.key}`}
        type="number"
        min={1}
        max={ns.freeSegments}
        value={count}
        onInput={(e) => setCount(e.currentTarget.value)}
      />
      <button type="submit" disabled={!key}>
        Allocate
      </button>
    </form>
  );
}
