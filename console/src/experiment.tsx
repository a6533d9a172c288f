import { ExperimentSchema, ExperimentStatus, type Experiment } from "../../gen/ts/assignment/v1/types_pb.js";
import type { GetExperimentStatsResponse, UpdateExperimentRequest } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { UpdateExperimentRequestSchema } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { useEffect, useState } from "preact/hooks";
import { describeError, experiments, type Role } from "./api.js";
import { SplitChart } from "./chart.js";
import { movedShare, pct, share, statusName, when } from "./format.js";
import { srmWords } from "./srm.js";

/** How often the counts refresh while the page is open. */
const REFRESH_MS = 2000;

/** Targeting arrives with the targeting work: shown when the server's Experiment carries a condition. */
const HAS_CONDITION = ExperimentSchema.fields.some((f) => f.name === "condition");
const UPDATES_CONDITION = UpdateExperimentRequestSchema.fields.some((f) => f.name === "condition");

type Update = Omit<MessageInitShape<typeof UpdateExperimentRequestSchema>, "key" | "version">;

export function ExperimentPage({ experimentKey, role }: { experimentKey: string; role: Role }) {
  const [exp, setExp] = useState<Experiment | null>(null);
  const [stats, setStats] = useState<GetExperimentStatsResponse | null>(null);
  const [countedAt, setCountedAt] = useState<Date | null>(null);
  const [error, setError] = useState("");
  const [message, setMessage] = useState<{ error: boolean; text: string; conflict?: boolean } | null>(null);
  const reload = () =>
    experiments
      .getExperiment({ key: experimentKey })
      .then((r) => setExp(r.experiment ?? null))
      .catch((err) => setError(describeError(err)));
  useEffect(() => {
    reload();
    let live = true;
    const refresh = () =>
      experiments
        .getExperimentStats({ key: experimentKey })
        .then((s) => {
          if (!live) return;
          setStats(s);
          setCountedAt(new Date());
        })
        .catch(() => {});
    refresh();
    const timer = setInterval(refresh, REFRESH_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [experimentKey]);
  if (error)
    return (
      <p role="alert" class="error">
        {error}
      </p>
    );
  if (!exp) return <p class="loading">Loading…</p>;
  const canOperate = role === "admin" || role === "operator";
  const canAdmin = role === "admin";
  /** One UpdateExperiment at the version shown; a conflict (ABORTED) is said in words. */
  const update = async (what: string, change: Update) => {
    setMessage(null);
    try {
      const r = await experiments.updateExperiment({ key: exp.key, version: exp.version, ...change } as UpdateExperimentRequest);
      setExp(r.experiment ?? exp);
      setMessage({ error: false, text: `${what}: done (version ${r.experiment?.version}).` });
    } catch (err) {
      setMessage({ error: true, text: `${what}: ${describeError(err)}`, conflict: ConnectError.from(err).code === Code.Aborted });
    }
  };
  const condition = HAS_CONDITION ? String((exp as unknown as Record<string, unknown>).condition ?? "") : undefined;
  return (
    <article aria-labelledby="experiment-title">
      <p>
        <a href="#/experiments">← Experiments</a>
      </p>
      <h1 id="experiment-title">
        {exp.key} <span class={`status status-${statusName(exp.status)}`}>{statusName(exp.status)}</span>
      </h1>
      {exp.description && <p>{exp.description}</p>}
      <dl class="facts">
        <dt>Unit type</dt>
        <dd>{exp.unitType}</dd>
        <dt>Rollout</dt>
        <dd data-testid="rollout">{pct(exp.rollout)}</dd>
        <dt>Winner</dt>
        <dd data-testid="winner">{exp.winner || "none"}</dd>
        <dt>Default variant</dt>
        <dd>{exp.defaultVariant}</dd>
        <dt>Namespace</dt>
        <dd>{exp.namespace ? `${exp.namespace}: ${exp.segments} segments` : "none"}</dd>
        <dt>Targeting</dt>
        <dd data-testid="targeting">
          {condition === undefined ? "not available on this server" : condition ? <code>{condition}</code> : "every unit"}
        </dd>
        <dt>Tags</dt>
        <dd>{exp.tags.length ? exp.tags.map((t) => <span class="tag">{t}</span>) : "none"}</dd>
        <dt>Version</dt>
        <dd data-testid="version">{String(exp.version)}</dd>
        <dt>Updated</dt>
        <dd>{when(exp.updateTime)}</dd>
      </dl>
      {message && (
        <p role={message.error ? "alert" : "status"} class={message.error ? "error" : "ok"} data-testid="action-message">
          {message.text}{" "}
          {message.conflict && (
            <button
              type="button"
              onClick={() => {
                setMessage(null);
                reload();
              }}
            >
              Reload the experiment
            </button>
          )}
        </p>
      )}
      <div class="columns">
        <section aria-labelledby="split-title" class="panel">
          <h2 id="split-title">Split</h2>
          {stats ? <Stats stats={stats} /> : <p class="loading">Counting…</p>}
          {countedAt && (
            <p class="help">
              Counts refresh every {REFRESH_MS / 1000} s while this page is open (last: {countedAt.toLocaleTimeString()}).
            </p>
          )}
        </section>
        <section aria-labelledby="variants-title" class="panel">
          <h2 id="variants-title">Variants</h2>
          <table>
            <thead>
              <tr>
                <th scope="col">Variant</th>
                <th scope="col">Weight</th>
                <th scope="col">Params</th>
              </tr>
            </thead>
            <tbody>
              {exp.variants.map((v) => (
                <tr>
                  <td>{v.key}</td>
                  <td>{pct(v.weight)}</td>
                  <td>
                    <code>{v.params ? JSON.stringify(v.params) : "{}"}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      </div>
      {canOperate ? (
        <section aria-labelledby="actions-title" class="panel actions">
          <h2 id="actions-title">Actions</h2>
          <Lifecycle exp={exp} update={update} />
          <Ramp exp={exp} update={update} />
          {canAdmin ? (
            <>
              <Weights exp={exp} update={update} />
              <Params exp={exp} update={update} />
              {UPDATES_CONDITION && <Targeting exp={exp} update={update} />}
            </>
          ) : (
            <p class="help">Weights and params are changed with an admin token.</p>
          )}
        </section>
      ) : (
        <p class="help" data-testid="read-only">
          Read only: this token (role {role}) cannot change experiments.
        </p>
      )}
    </article>
  );
}

function Stats({ stats }: { stats: GetExperimentStatsResponse }) {
  return (
    <>
      <p data-testid="srm" class={stats.sampleRatioMismatch ? "error" : ""}>
        <strong>{stats.totalUnits === 0n ? "No units yet." : srmWords(stats)}</strong>
        {stats.totalUnits > 0n &&
          ` — χ² ${stats.chiSquare.toFixed(2)}, ${stats.degreesOfFreedom} degree${stats.degreesOfFreedom === 1 ? "" : "s"} of freedom`}
      </p>
      <SplitChart stats={stats} />
      <table data-testid="counts">
        <thead>
          <tr>
            <th scope="col">Variant</th>
            <th scope="col">Units</th>
            <th scope="col">Observed</th>
            <th scope="col">Expected</th>
            <th scope="col">Overrides</th>
          </tr>
        </thead>
        <tbody>
          {stats.variants.map((v) => (
            <tr>
              <td>{v.variantKey}</td>
              <td>{String(v.units)}</td>
              <td>{share(v.observedShare)}</td>
              <td>{share(v.expectedShare)}</td>
              <td>{String(v.overrides)}</td>
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr>
            <th scope="row">Total</th>
            <td data-testid="total-units">{String(stats.totalUnits)}</td>
            <td colSpan={3} />
          </tr>
        </tfoot>
      </table>
    </>
  );
}

type ActionProps = { exp: Experiment; update: (what: string, change: Update) => Promise<void> };

function Lifecycle({ exp, update }: ActionProps) {
  const [winner, setWinner] = useState("");
  const s = exp.status;
  return (
    <div class="action">
      <h3>Status</h3>
      {(s === ExperimentStatus.DRAFT || s === ExperimentStatus.PAUSED) && (
        <button type="button" onClick={() => update("Start", { status: ExperimentStatus.RUNNING })}>
          Start
        </button>
      )}
      {s === ExperimentStatus.RUNNING && (
        <button type="button" onClick={() => update("Pause", { status: ExperimentStatus.PAUSED })}>
          Pause
        </button>
      )}
      {s !== ExperimentStatus.STOPPED && (
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            update("Stop", { status: ExperimentStatus.STOPPED, winner });
          }}
        >
          <label for="winner">Winner</label>
          <select id="winner" value={winner} onChange={(e) => setWinner(e.currentTarget.value)}>
            <option value="">none (everyone gets the default variant)</option>
            {exp.variants.map((v) => (
              <option value={v.key}>{v.key}</option>
            ))}
          </select>
          <button type="submit">Stop</button>
        </form>
      )}
      {s === ExperimentStatus.STOPPED && <p class="help">Stopped{exp.winner ? ` with winner ${exp.winner}` : ""}.</p>}
    </div>
  );
}

function Ramp({ exp, update }: ActionProps) {
  const [value, setValue] = useState(String(exp.rollout / 100));
  useEffect(() => setValue(String(exp.rollout / 100)), [exp.rollout]);
  const bp = Math.round(Number(value) * 100);
  return (
    <form
      class="action"
      onSubmit={(e) => {
        e.preventDefault();
        update("Ramp", { rollout: bp });
      }}
    >
      <h3>Rollout</h3>
      <label for="rollout">Share of eligible units enrolled (%)</label>
      <input id="rollout" type="number" min={0} max={100} step={0.01} value={value} onInput={(e) => setValue(e.currentTarget.value)} />
      <button type="submit" disabled={!(bp >= 0 && bp <= 10000) || bp === exp.rollout}>
        Ramp to {Number.isFinite(bp) ? pct(bp) : "?"}
      </button>
      <p class="help">
        {bp > exp.rollout
          ? "Raising the rollout only adds units; enrolled units keep their variant."
          : bp < exp.rollout
            ? "Lowering it enrols fewer new units; units already stored keep their variant."
            : ""}
      </p>
    </form>
  );
}

function Weights({ exp, update }: ActionProps) {
  const [weights, setWeights] = useState(exp.variants.map((v) => String(v.weight / 100)));
  useEffect(() => setWeights(exp.variants.map((v) => String(v.weight / 100))), [exp.version]);
  const bps = weights.map((w) => Math.round(Number(w) * 100));
  const sum = bps.reduce((a, b) => a + b, 0);
  const valid = sum === 10000 && bps.every((b) => b >= 0);
  const moved = valid
    ? movedShare(
        exp.variants.map((v) => v.weight),
        bps,
      )
    : 0;
  return (
    <form
      class="action"
      onSubmit={(e) => {
        e.preventDefault();
        update("Change weights", {
          variants: { variants: exp.variants.map((v, i) => ({ key: v.key, weight: bps[i]!, params: v.params })) },
        });
      }}
    >
      <h3>Weights</h3>
      {exp.variants.map((v, i) => (
        <label class="inline-label">
          {v.key} (%)
          <input
            type="number"
            min={0}
            max={100}
            step={0.01}
            value={weights[i]}
            onInput={(e) => setWeights(weights.map((w, j) => (j === i ? e.currentTarget.value : w)))}
          />
        </label>
      ))}
      <p class="preview" data-testid="weights-preview" aria-live="polite">
        {valid
          ? `No stored unit moves; only new units follow the new weights. Of the units enrolled from now on, ${share(moved)} get a different variant than they would under the current weights.`
          : `The weights must add up to 100% (now ${pct(sum)}).`}
      </p>
      <button type="submit" disabled={!valid || moved === 0}>
        Change weights
      </button>
    </form>
  );
}

function Params({ exp, update }: ActionProps) {
  const [texts, setTexts] = useState(exp.variants.map((v) => JSON.stringify(v.params ?? {}, null, 1)));
  useEffect(() => setTexts(exp.variants.map((v) => JSON.stringify(v.params ?? {}, null, 1))), [exp.version]);
  const [problem, setProblem] = useState("");
  return (
    <form
      class="action"
      onSubmit={(e) => {
        e.preventDefault();
        try {
          const params = texts.map((t) => JSON.parse(t || "{}"));
          setProblem("");
          update("Edit params", {
            variants: { variants: exp.variants.map((v, i) => ({ key: v.key, weight: v.weight, params: params[i] })) },
          });
        } catch (err) {
          setProblem(`Params must be JSON objects: ${(err as Error).message}`);
        }
      }}
    >
      <h3>Params</h3>
      {exp.variants.map((v, i) => (
        <label class="block-label">
          {v.key}
          <textarea rows={3} value={texts[i]} onInput={(e) => setTexts(texts.map((t, j) => (j === i ? e.currentTarget.value : t)))} />
        </label>
      ))}
      {problem && (
        <p role="alert" class="error">
          {problem}
        </p>
      )}
      <button type="submit">Save params</button>
    </form>
  );
}

/** The targeting condition, once the server takes one (UpdateExperimentRequest.condition). */
function Targeting({ exp, update }: ActionProps) {
  const current = String((exp as unknown as Record<string, unknown>).condition ?? "");
  const [text, setText] = useState(current);
  useEffect(() => setText(current), [exp.version]);
  return (
    <form
      class="action"
      onSubmit={(e) => {
        e.preventDefault();
        update("Change targeting", { condition: text.trim() } as Update);
      }}
    >
      <h3>Targeting</h3>
      <label for="condition">Condition (CEL over attributes; empty: every unit)</label>
      <textarea id="condition" rows={2} value={text} onInput={(e) => setText(e.currentTarget.value)} />
      <p class="help">Stored units keep their variant; the condition decides for units not stored yet.</p>
      <button type="submit" disabled={text.trim() === current}>
        Save targeting
      </button>
    </form>
  );
}
