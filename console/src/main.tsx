import { type ComponentChild, render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { describeError, probeRole, type Role, session } from "./api.js";
import { ExperimentPage } from "./experiment.js";
import { ExperimentsPage, prefetchExperiments } from "./experiments.js";
import { HistoryPage } from "./history.js";
import { HoldoutsPage } from "./holdouts.js";
import { JobsPage } from "./jobs.js";
import { LookupPage } from "./lookup.js";
import { NamespacesPage } from "./namespaces.js";
import "./style.css";

/** The page named by the URL's fragment (#/experiments/checkout-button): links work and reloads keep the page. */
function useRoute(): string[] {
  const read = () => location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}

function SignIn({ onSignedIn, problem }: { onSignedIn: (role: Role) => void; problem?: string }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState(problem ?? "");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    session.set(token.trim());
    try {
      onSignedIn(await probeRole());
    } catch (err) {
      session.clear();
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <h1>Experiments console</h1>
      <form onSubmit={submit} aria-describedby="signin-help">
        <label for="token">Token</label>
        <input id="token" type="password" autoComplete="off" value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        <p id="signin-help" class="help">
          Your API token (empty when the server takes calls without tokens). It is kept in this tab only and forgotten when the tab closes.
        </p>
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}

const NAV = [
  ["experiments", "Experiments"],
  ["namespaces", "Namespaces"],
  ["holdouts", "Holdouts"],
  ["lookup", "Unit lookup"],
  ["history", "History"],
  ["jobs", "Jobs"],
] as const;

function App() {
  const [role, setRole] = useState<Role | null>(null);
  const [checking, setChecking] = useState(session.token() !== null);
  const [problem, setProblem] = useState<string | undefined>();
  const route = useRoute();
  useEffect(() => {
    if (session.token() === null) return;
    if (route[0] === undefined || (route[0] === "experiments" && !route[1])) prefetchExperiments();
    probeRole()
      .then(setRole)
      .catch((err) => {
        session.clear();
        setProblem(describeError(err));
      })
      .finally(() => setChecking(false));
  }, []);
  const signOut = () => {
    session.clear();
    setRole(null);
  };
  if (checking) return <p class="loading">Checking the token…</p>;
  if (role === null) return <SignIn onSignedIn={setRole} problem={problem} />;
  if (role === "assign") {
    return (
      <main class="signin">
        <p role="alert" class="error">
          This token has role assign: it may assign units but not read experiments. Sign in with an admin, operator or reader token.
        </p>
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      </main>
    );
  }
  const [page = "experiments", arg] = route;
  let body: ComponentChild;
  if (page === "experiments" && arg) body = <ExperimentPage key={arg} experimentKey={arg} role={role} />;
  else if (page === "namespaces") body = <NamespacesPage role={role} />;
  else if (page === "holdouts") body = <HoldoutsPage role={role} />;
  else if (page === "lookup") body = <LookupPage role={role} />;
  else if (page === "history") body = <HistoryPage />;
  else if (page === "jobs") body = <JobsPage />;
  else body = <ExperimentsPage role={role} />;
  return (
    <>
      <header class="top">
        <nav aria-label="Main">
          <strong class="brand">Experiments</strong>
          {NAV.map(([path, label]) => (
            <a href={`#/${path}`} aria-current={page === path ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <div class="who">
          <span class="role" data-role={role}>
            role: {role}
          </span>
          <button type="button" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <main>{body}</main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
