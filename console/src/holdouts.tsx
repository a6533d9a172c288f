import { useEffect, useState } from "preact/hooks";
import type { GetHoldoutStatsResponse } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import type { Holdout } from "../../gen/ts/assignment/v1/types_pb.js";
import { describeError, experiments, type Role } from "./api.js";
import { pct, when } from "./format.js";

/**
 * Holdouts: who they hold out (share, unit type, scope), the experiments they cover, and per
 * experiment how many units were held out against how many are enrolled. An admin changes a share
 * at the version shown, so a change made meanwhile by someone else is refused, not overwritten.
 */
export function HoldoutsPage({ role }: { role: Role }) {
  const [list, setList] = useState<Holdout[] | null>(null);
  const [error, setError] = useState("");
  const load = () => {
    experiments
      .listHoldouts({})
      .then((r) => setList(r.holdouts))
      .catch((err) => setError(describeError(err)));
  };
  useEffect(load, []);
  return (
    <section aria-labelledby="holdouts-title">
      <h1 id="holdouts-title">Holdouts</h1>
      <p class="help">
        A holdout keeps a share of units out of every experiment it covers (those carrying any of its tags, or all of its unit type): they
        see each experiment's default variant and are never stored in it, so they can be compared with the enrolled units.
      </p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {list === null && !error && <p class="loading">Loading…</p>}
      {list?.length === 0 && <p>No holdouts.</p>}
      {list?.map((h) => (
        <HoldoutPanel key={h.key} holdout={h} admin={role === "admin"} reload={load} />
      ))}
    </section>
  );
}

function HoldoutPanel({ holdout: h, admin, reload }: { holdout: Holdout; admin: boolean; reload: () => void }) {
  const [stats, setStats] = useState<GetHoldoutStatsResponse | null>(null);
  const [statsError, setStatsError] = useState("");
  const [share, setShare] = useState(String(h.share / 100));
  const [message, setMessage] = useState<{ error: boolean; text: string } | null>(null);
  useEffect(() => setShare(String(h.share / 100)), [h.version]);
  useEffect(() => {
    experiments
      .getHoldoutStats({ key: h.key })
      .then(setStats)
      .catch((err) => setStatsError(describeError(err)));
  }, [h.key, h.version]);
  const id = `holdout-${h.key}`;
  const save = async (e: Event) => {
    e.preventDefault();
    setMessage(null);
    const bp = Math.round(Number(share) * 100);
    if (!Number.isFinite(bp) || bp < 0 || bp > 10_000) {
      setMessage({ error: true, text: "Share: a percentage from 0 to 100." });
      return;
    }
    try {
      const r = await experiments.updateHoldout({ key: h.key, share: bp, version: h.version });
      setMessage({ error: false, text: `Share of ${h.key}: done (version ${r.holdout?.version}).` });
      reload();
    } catch (err) {
      setMessage({ error: true, text: `Share of ${h.key}: ${describeError(err)}` });
    }
  };
  return (
    <article class="panel" aria-labelledby={id}>
      <h2 id={id}>
        {h.key} <small>unit type {h.unitType}</small>
      </h2>
      <dl class="facts">
        <dt>Share held out</dt>
        <dd data-testid="holdout-share">{pct(h.share)}</dd>
        <dt>Scope</dt>
        <dd>{h.tags.length ? h.tags.map((t) => <span class="tag">{t}</span>) : `every ${h.unitType} experiment`}</dd>
        <dt>Version</dt>
        <dd data-testid="holdout-version">{String(h.version)}</dd>
        <dt>Updated</dt>
        <dd>{when(h.updateTime)}</dd>
      </dl>
      {statsError && (
        <p role="alert" class="error">
          {statsError}
        </p>
      )}
      {stats && stats.experiments.length === 0 && <p>It covers no experiment now.</p>}
      {stats && stats.experiments.length > 0 && (
        <div class="table-wrap">
          <table data-testid="holdout-stats" aria-label={`${h.key} per experiment`}>
            <thead>
              <tr>
                <th scope="col">Experiment</th>
                <th scope="col">Held out</th>
                <th scope="col">Enrolled</th>
                <th scope="col">Held out of all</th>
              </tr>
            </thead>
            <tbody>
              {stats.experiments.map((x) => {
                const all = x.heldOut + x.exposed;
                return (
                  <tr>
                    <th scope="row">
                      <a href={`#/experiments/${encodeURIComponent(x.experimentKey)}`}>{x.experimentKey}</a>
                    </th>
                    <td>{x.heldOut.toLocaleString("en-US")}</td>
                    <td>{x.exposed.toLocaleString("en-US")}</td>
                    <td>{all === 0n ? "—" : `${((Number(x.heldOut) / Number(all)) * 100).toFixed(2)}%`}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {admin && (
        <form class="inline" onSubmit={save}>
          <label for={`${id}-share`}>New share (%)</label>
          <input
            id={`${id}-share`}
            type="number"
            min={0}
            max={100}
            step={0.01}
            value={share}
            onInput={(e) => setShare(e.currentTarget.value)}
          />
          <button type="submit">Change share</button>
        </form>
      )}
      {message && (
        <p role={message.error ? "alert" : "status"} class={message.error ? "error" : "ok"}>
          {message.text}
        </p>
      )}
    </article>
  );
}
