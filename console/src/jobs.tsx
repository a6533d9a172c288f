import { useEffect, useState } from "preact/hooks";
import { type Job, JobKind, JobState } from "../../gen/ts/assignment/v1/job_service_pb.js";
import { describeError, jobs } from "./api.js";
import { when } from "./format.js";

const REFRESH_MS = 2000;
const stateName = (s: JobState) => (JobState[s] ?? String(s)).toLowerCase();
const kindName = (k: JobKind) => (JobKind[k] ?? String(k)).toLowerCase();

export function JobsPage() {
  const [list, setList] = useState<Job[] | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    let live = true;
    const load = () =>
      jobs
        .listJobs({ limit: 100 })
        .then((r) => {
          if (!live) return;
          setList(r.jobs);
          setError("");
        })
        .catch((err) => live && setError(describeError(err)));
    load();
    const timer = setInterval(load, REFRESH_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, []);
  const active = (list ?? []).filter((j) => j.state === JobState.QUEUED || j.state === JobState.RUNNING);
  const done = (list ?? []).filter((j) => !active.includes(j));
  return (
    <section aria-labelledby="jobs-title">
      <h1 id="jobs-title">Jobs</h1>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {list === null && !error && <p class="loading">Loading…</p>}
      {list !== null && (
        <>
          <h2>Running and queued</h2>
          {active.length === 0 ? <p>No job is running.</p> : <JobTable jobs={active} />}
          <h2>Finished</h2>
          {done.length === 0 ? <p>None.</p> : <JobTable jobs={done} />}
        </>
      )}
    </section>
  );
}

function JobTable({ jobs: list }: { jobs: Job[] }) {
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">Job</th>
            <th scope="col">Kind</th>
            <th scope="col">Cohort</th>
            <th scope="col">Experiments</th>
            <th scope="col">State</th>
            <th scope="col">Progress</th>
            <th scope="col">Started by</th>
            <th scope="col">Created</th>
          </tr>
        </thead>
        <tbody>
          {list.map((j) => {
            const total = Number(j.totalUnits);
            const processed = Number(j.processedUnits);
            return (
              <tr>
                <td>
                  <code>{j.id.slice(0, 8)}</code>
                </td>
                <td>{kindName(j.spec?.kind ?? JobKind.UNSPECIFIED)}</td>
                <td>{j.spec?.cohort}</td>
                <td>{j.spec?.experimentKeys.join(", ") || (j.spec?.tag ? `tag ${j.spec.tag}` : "")}</td>
                <td>
                  {stateName(j.state)}
                  {j.error && <span class="error"> {j.error}</span>}
                </td>
                <td>
                  <progress max={total || 1} value={processed} aria-label={`job ${j.id} progress`} /> {processed.toLocaleString()} of{" "}
                  {total.toLocaleString()} units
                </td>
                <td>{j.schedule ? `schedule ${j.schedule}` : j.createdBy}</td>
                <td>{when(j.createTime)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
