/**
 * The web console end to end: headless Chromium (the system's, driven by playwright-core; no
 * downloaded browser) against a real server on real PostgreSQL and Redis, serving the console
 * built by `npm run build` on its HTTP port. Signs in, creates and starts an experiment, assigns
 * 10,000 units over gRPC and reads their counts off the page, ramps, changes weights (the preview
 * says how many future units move), meets a version conflict, stops with a winner, runs a namespace
 * allocation, reads and changes a holdout, looks a unit up (a dry run: nobody is enrolled), sets and clears an override; a
 * reader token is offered no edit control and refused by the server; a list of 1,000 experiments
 * is timed (reported, not asserted). Screenshots of the main pages go to screenshots/console/
 * (git-ignored).
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AssignmentService,
  type Client,
  CohortService,
  createClient,
  ExperimentService,
  ExperimentStatus,
  JobKind,
  JobService,
} from "assignment-client";
import { parseTokenFile } from "../../src/ops/token-file.js";
import { specVariantBucket } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SHOTS = join(ROOT, "screenshots", "console");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

const TOKENS = {
  admin: "console-test-admin-0123456789",
  operator: "console-test-operator-0123456789",
  reader: "console-test-reader-0123456789",
  assign: "console-test-assign-0123456789",
};

let t: TestServer;
let base: string;
let browser: Browser;
let admin: Client<typeof ExperimentService>;
let assigner: Client<typeof AssignmentService>;

beforeAll(async () => {
  if (!existsSync(join(ROOT, "console", "dist", "index.html"))) {
    throw new Error("console/dist is missing: npm ci (prepare) or npm run build builds it");
  }
  mkdirSync(SHOTS, { recursive: true });
  const file = Object.entries(TOKENS)
    .map(([role, token]) => `${role}-person ${role} ${token}`)
    .join("\n");
  t = await startTestServer({ tokens: parseTokenFile(file), httpPort: 0 });
  base = `http://127.0.0.1:${t.server.httpPort}`;
  admin = createClient(ExperimentService, t.server.address, { token: TOKENS.admin, timeoutMs: 30_000 });
  assigner = createClient(AssignmentService, t.server.address, { token: TOKENS.assign, timeoutMs: 30_000 });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});
afterAll(async () => {
  await browser?.close();
  admin?.close();
  assigner?.close();
  await t?.stop();
});

/** A fresh tab at laptop width (1366x768), console errors collected. */
async function openTab(): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Console errors too (a script or style the page's content security policy blocks shows here),
  // but not the browser's note on each refused call (a 4xx answer the page handles).
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  return { context, page, errors };
}

async function signIn(page: Page, token: string): Promise<void> {
  await page.goto(`${base}/console/`);
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation", { name: "Main" }).waitFor();
}

/** Waits for what the page shows (a refresh, a call's answer): generous, as the suite shares the machine. */
const poll = <T>(read: () => Promise<T>, timeout = 20_000) => expect.poll(read, { timeout });

const shot = (page: Page, name: string, fullPage = true) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });

describe("the console's files on the HTTP port", () => {
  it("serves the page and its bundles with their content types, and nothing else under /console/", async () => {
    const index = await fetch(`${base}/console/`);
    expect(index.status).toBe(200);
    expect(index.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(index.headers.get("content-security-policy")).toContain("default-src 'self'");
    const html = await index.text();
    const script = /src="(\/console\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    const style = /href="(\/console\/assets\/[^"]+\.css)"/.exec(html)?.[1];
    expect(script).toBeDefined();
    expect(style).toBeDefined();
    const js = await fetch(`${base}${script}`);
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(js.headers.get("cache-control")).toContain("immutable");
    expect((await fetch(`${base}${style}`)).headers.get("content-type")).toBe("text/css; charset=utf-8");
    const bare = await fetch(`${base}/console`, { redirect: "manual" });
    expect(bare.status).toBe(308);
    expect(bare.headers.get("location")).toBe("/console/");
    // Paths outside the built files: encoded or not, nothing is read from the disk for them.
    for (const path of [
      "/console/../package.json",
      "/console/%2e%2e/package.json",
      "/console/..%2f..%2fpackage.json",
      "/console/nope.js",
    ]) {
      const r = await fetch(`${base}${path}`);
      expect(r.status, path).toBe(404);
      expect(await r.text(), path).not.toContain("assignment-server");
    }
    expect((await fetch(`${base}/console/`, { method: "POST" })).status).toBe(405);
    // The API beside it still answers.
    const api = await fetch(`${base}/assignment.v1.ExperimentService/ListExperiments`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${TOKENS.reader}` },
      body: "{}",
    });
    expect(api.status).toBe(200);
    // JobService is served over HTTP too (the console's Jobs page reads it).
    const jobs = await fetch(`${base}/assignment.v1.JobService/ListJobs`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${TOKENS.reader}` },
      body: "{}",
    });
    expect(jobs.status).toBe(200);
  });
});

describe("an admin runs an experiment from the console", { timeout: 120_000 }, () => {
  it("signs in, creates, starts, sees 10,000 assigned units, ramps, changes weights, meets a conflict, stops with a winner", async () => {
    const { context, page, errors } = await openTab();
    const namespacesBefore = (await admin.listNamespaces({})).namespaces.length;
    await signIn(page, TOKENS.admin);
    await poll(() => page.getByText("role: admin").count()).toBe(1);
    // Finding the role changed nothing (its probes are refused as invalid).
    expect((await admin.listNamespaces({})).namespaces.length).toBe(namespacesBefore);
    expect(await page.evaluate(() => [localStorage.length, document.cookie])).toEqual([0, ""]);

    await page.getByText("New experiment").click();
    await page.getByLabel("Key", { exact: true }).fill("checkout-button");
    await page.getByLabel("Variants (key:percent, …)").fill("control:50, treatment:50");
    await page.getByLabel("Tags (comma separated)").fill("checkout, web");
    await page.getByRole("button", { name: "Create experiment" }).click();
    await page.getByText("Created checkout-button (draft).").waitFor();
    const created = (await admin.getExperiment({ key: "checkout-button" })).experiment!;
    expect(created.variants.map((v) => [v.key, v.weight])).toEqual([
      ["control", 5000],
      ["treatment", 5000],
    ]);
    expect(created.tags).toEqual(["checkout", "web"]);

    await page.getByRole("link", { name: "checkout-button" }).click();
    await page.getByRole("heading", { name: /checkout-button/ }).waitFor();
    await page.getByRole("button", { name: "Start" }).click();
    await page.getByText(/Start: done/).waitFor();
    expect((await admin.getExperiment({ key: "checkout-button" })).experiment!.status).toBe(ExperimentStatus.RUNNING);

    // 10,000 units from the test, over gRPC; the page's counts must match the answers.
    const ids = Array.from({ length: 10_000 }, (_, i) => `unit-${i}`);
    const { column } = await assigner.bulkAssign({ experimentKey: "checkout-button", unitIds: ids });
    const perVariant = new Map<string, number>();
    column!.variantIndexes.forEach((v) => perVariant.set(column!.legend[v]!, (perVariant.get(column!.legend[v]!) ?? 0) + 1));
    expect([...perVariant.values()].reduce((a, b) => a + b, 0)).toBe(10_000);
    // The page refreshes its counts while open: no reload.
    await poll(() => page.getByTestId("total-units").textContent()).toBe("10000");
    for (const [variant, n] of perVariant) {
      const row = page.getByTestId("counts").getByRole("row", { name: new RegExp(`^${variant} `) });
      await poll(() => row.textContent()).toContain(String(n));
    }
    // The verdict, from the counts alone: chi-square of a 50/50 split against 10.828 (p = 0.001, 1 degree of freedom).
    const c = perVariant.get("control")!;
    const chi = ((c - 5000) ** 2 + (10_000 - c - 5000) ** 2) / 5000;
    await poll(() => page.getByTestId("srm").textContent()).toContain(chi > 10.828 ? "sample ratio mismatch" : "split as expected");
    await poll(() => page.getByRole("img", { name: /Observed and expected share per variant/ }).count()).toBe(1);
    await shot(page, "experiment");

    // Ramp to 25%.
    await page.getByLabel("Share of eligible units enrolled (%)").fill("25");
    await page.getByRole("button", { name: "Ramp to 25%" }).click();
    await page.getByText(/Ramp: done/).waitFor();
    expect((await admin.getExperiment({ key: "checkout-button" })).experiment!.rollout).toBe(2500);
    await poll(() => page.getByTestId("rollout").textContent()).toBe("25%");

    // Weights 50/50 -> 40/60: variant buckets 4000..4999 go from control to treatment, 10% of new units.
    await page.getByLabel("control (%)").fill("40");
    await page.getByLabel("treatment (%)").fill("60");
    const preview = await page.getByTestId("weights-preview").textContent();
    expect(preview).toContain("No stored unit moves; only new units follow the new weights.");
    expect(preview).toContain("10.00% get a different variant");
    await page.getByRole("button", { name: "Change weights" }).click();
    await page.getByText(/Change weights: done/).waitFor();
    expect((await admin.getExperiment({ key: "checkout-button" })).experiment!.variants.map((v) => v.weight)).toEqual([4000, 6000]);
    // No stored unit moved: every unit answers its variant of before.
    const again = await assigner.bulkAssign({ experimentKey: "checkout-button", unitIds: ids });
    expect(again.column!.variantIndexes.map((v) => again.column!.legend[v])).toEqual(column!.variantIndexes.map((v) => column!.legend[v]));

    // Params: edited as JSON, stored as the variant's params.
    await page.getByLabel("treatment", { exact: true }).fill('{"color": "green", "size": 2}');
    await page.getByRole("button", { name: "Save params" }).click();
    await page.getByText(/Edit params: done/).waitFor();
    const edited = (await admin.getExperiment({ key: "checkout-button" })).experiment!;
    expect(edited.variants.map((v) => [v.key, v.weight, v.params ?? {}])).toEqual([
      ["control", 4000, {}],
      ["treatment", 6000, { color: "green", size: 2 }],
    ]);

    // Someone else changes it meanwhile: the page's next action is refused, in words.
    const current = (await admin.getExperiment({ key: "checkout-button" })).experiment!;
    await admin.updateExperiment({ key: "checkout-button", version: current.version, description: "changed elsewhere" });
    await page.getByRole("button", { name: "Pause" }).click();
    await poll(() => page.getByTestId("action-message").textContent()).toContain("Someone else changed this meanwhile");
    expect((await admin.getExperiment({ key: "checkout-button" })).experiment!.status).toBe(ExperimentStatus.RUNNING);

    // Reload (the conflict offers it), then stop with a winner.
    await page.getByRole("button", { name: "Reload the experiment" }).click();
    await poll(() => page.getByTestId("version").textContent()).toBe(String(current.version + 1n));
    await page.getByLabel("Winner").selectOption("treatment");
    await page.getByRole("button", { name: "Stop" }).click();
    await page.getByText(/Stop: done/).waitFor();
    const stopped = (await admin.getExperiment({ key: "checkout-button" })).experiment!;
    expect([stopped.status, stopped.winner]).toEqual([ExperimentStatus.STOPPED, "treatment"]);
    await poll(() => page.getByTestId("winner").textContent()).toBe("treatment");
    expect(errors).toEqual([]);
    await context.close();
  });

  it("allocates and releases namespace segments", async () => {
    await admin.createNamespace({ key: "checkout-ns", segments: 100 });
    await admin.createExperiment({ key: "ns-colour", variants: [{ key: "a", weight: 10000 }] });
    await admin.createNamespace({ key: "search-ns", segments: 50 });
    await admin.createExperiment({ key: "ns-ranking", variants: [{ key: "a", weight: 10000 }] });
    await admin.allocateSegments({ namespaceKey: "search-ns", experimentKey: "ns-ranking", segments: 20 });
    const { context, page, errors } = await openTab();
    await signIn(page, TOKENS.admin);
    await page.getByRole("link", { name: "Namespaces" }).click();
    await page.getByLabel("Experiment", { exact: true }).first().waitFor();
    const ns = page.getByRole("article", { name: /checkout-ns/ });
    await ns.getByLabel("Experiment", { exact: true }).selectOption("ns-colour");
    await ns.getByLabel("Segments", { exact: true }).fill("30");
    await ns.getByRole("button", { name: "Allocate" }).click();
    await page.getByText("Allocate to ns-colour: done.").waitFor();
    expect((await admin.getNamespace({ key: "checkout-ns" })).namespace!.freeSegments).toBe(70);
    await poll(() => ns.getByRole("img").getAttribute("aria-label")).toBe("ns-colour holds 30; 70 of 100 free");
    await shot(page, "namespaces");
    await ns.getByRole("button", { name: "Release" }).click();
    await page.getByText("Release ns-colour: done.").waitFor();
    expect((await admin.getNamespace({ key: "checkout-ns" })).namespace!.freeSegments).toBe(100);
    expect(errors).toEqual([]);
    await context.close();
  });

  it("shows holdouts with their counts, and changes a share at the version shown; a change made meanwhile is refused", async () => {
    await admin.createExperiment({
      key: "ho-console-exp",
      variants: [{ key: "a", weight: 10000 }],
      status: ExperimentStatus.RUNNING,
      tags: ["ho-console"],
    });
    await admin.createHoldout({ key: "ho-console", salt: "ho-console-salt", share: 1000, tags: ["ho-console"] });
    const ids = Array.from({ length: 500 }, (_, i) => `ho-console-${i}`);
    await assigner.bulkAssign({ experimentKey: "ho-console-exp", unitIds: ids });
    // Held out: holdout bucket H(unit + ":" + salt) mod 10000 below the share (SPEC.md, rule 7).
    const heldOut = ids.filter((u) => specVariantBucket(u, "ho-console-salt") < 1000).length;
    expect(heldOut).toBeGreaterThan(20);
    const { context, page, errors } = await openTab();
    await signIn(page, TOKENS.admin);
    await page.getByRole("link", { name: "Holdouts" }).click();
    const panel = page.getByRole("article", { name: /ho-console/ });
    const row = panel.getByTestId("holdout-stats").getByRole("row", { name: /^ho-console-exp / });
    await row.waitFor();
    const cells = await row.getByRole("cell").allTextContents();
    expect(cells).toEqual([heldOut.toLocaleString("en-US"), (500 - heldOut).toLocaleString("en-US"), expect.stringMatching(/%$/)]);
    expect([await panel.getByTestId("holdout-share").textContent(), await panel.getByTestId("holdout-version").textContent()]).toEqual([
      "10%",
      "1",
    ]);
    await shot(page, "holdouts");
    await panel.getByLabel("New share (%)").fill("20");
    await panel.getByRole("button", { name: "Change share" }).click();
    await page.getByText("Share of ho-console: done (version 2).").waitFor();
    expect((await admin.getHoldout({ key: "ho-console" })).holdout).toMatchObject({ share: 2000, version: 2n });
    await poll(() => panel.getByTestId("holdout-share").textContent()).toBe("20%");
    // Someone else changes it; the page still shows version 2, so its change is refused.
    await admin.updateHoldout({ key: "ho-console", share: 3000 });
    await panel.getByLabel("New share (%)").fill("25");
    await panel.getByRole("button", { name: "Change share" }).click();
    await page.getByText(/Share of ho-console: Someone else changed this meanwhile/).waitFor();
    expect((await admin.getHoldout({ key: "ho-console" })).holdout).toMatchObject({ share: 3000, version: 3n });
    expect(errors).toEqual([]);
    await context.close();
  });

  it("looks a unit up without enrolling it, and sets and clears an override", async () => {
    await admin.createExperiment({
      key: "lookup-banner",
      variants: [
        { key: "off", weight: 5000 },
        { key: "on", weight: 5000 },
      ],
      status: ExperimentStatus.RUNNING,
    });
    const { context, page, errors } = await openTab();
    await signIn(page, TOKENS.admin);
    await page.getByRole("link", { name: "Unit lookup" }).click();
    await page.getByLabel("Unit id").fill("never-seen-unit");
    await page.getByRole("button", { name: "Look up" }).click();
    const row = (key: string) => page.getByTestId("lookup-result").getByRole("row", { name: new RegExp(`^${key} `) });
    await row("lookup-banner").waitFor();
    expect(await row("lookup-banner").textContent()).toContain("new:");
    // checkout-button is stopped with a winner: not in the lookup (only running and paused experiments are).
    expect(await row("checkout-button").count()).toBe(0);
    // The lookup was a dry run: nothing stored.
    expect((await admin.getExperimentStats({ key: "lookup-banner" })).totalUnits).toBe(0n);
    await shot(page, "lookup");

    // Targeting: the attributes decide for a targeted experiment (a dry run still).
    await admin.createExperiment({
      key: "lookup-targeted",
      variants: [{ key: "only", weight: 10000 }],
      status: ExperimentStatus.RUNNING,
      condition: 'attributes.country == "US"',
    });
    await page.getByLabel("Attributes (JSON)").fill('{"country": "FR"}');
    await page.getByRole("button", { name: "Look up" }).click();
    await poll(() => row("lookup-targeted").textContent()).toContain("not_targeted:");
    await page.getByLabel("Attributes (JSON)").fill('{"country": "US"}');
    await page.getByRole("button", { name: "Look up" }).click();
    await poll(() => row("lookup-targeted").textContent()).toContain("new:");
    expect((await admin.getExperimentStats({ key: "lookup-targeted" })).totalUnits).toBe(0n);
    await row("lookup-targeted").getByRole("link", { name: "lookup-targeted" }).click();
    await poll(() => page.getByTestId("targeting").textContent()).toBe('attributes.country == "US"');
    await page.goBack();
    await page.getByLabel("Unit id").fill("never-seen-unit");
    await page.getByRole("button", { name: "Look up" }).click();
    await row("lookup-banner").waitFor();

    await page.getByLabel("Override variant for lookup-banner").selectOption("on");
    await row("lookup-banner").getByRole("button", { name: "Set override" }).click();
    await page.getByText("Override lookup-banner: done.").waitFor();
    await poll(() => row("lookup-banner").textContent()).toContain("override:");
    expect((await admin.listOverrides({ experimentKey: "lookup-banner" })).overrides.map((o) => [o.unitId, o.variantKey])).toEqual([
      ["never-seen-unit", "on"],
    ]);
    await row("lookup-banner").getByRole("button", { name: "Clear override" }).click();
    await page.getByText("Clear the override of lookup-banner: done.").waitFor();
    expect((await admin.listOverrides({ experimentKey: "lookup-banner" })).overrides).toEqual([]);
    expect((await admin.getExperimentStats({ key: "lookup-banner" })).totalUnits).toBe(0n);
    expect(errors).toEqual([]);
    await context.close();
  });

  it("shows the history with before and after, and jobs with their progress", async () => {
    const cohorts = createClient(CohortService, t.server.address, { token: TOKENS.admin, timeoutMs: 30_000 });
    const jobs = createClient(JobService, t.server.address, { token: TOKENS.admin, timeoutMs: 30_000 });
    try {
      async function* upload() {
        yield { setup: { name: "console-cohort" }, unitIds: Array.from({ length: 2000 }, (_, i) => `cohort-${i}`) };
      }
      await cohorts.uploadCohort(upload());
      const { job } = await jobs.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "console-cohort", experimentKeys: ["lookup-banner"] } });
      const { context, page, errors } = await openTab();
      await signIn(page, TOKENS.admin);
      await page.getByRole("link", { name: "History" }).click();
      await page.getByLabel("Object key").fill("checkout-button");
      await page.getByRole("button", { name: "Filter" }).click();
      // The ramp: rollout 10000 -> 2500, by the admin's token.
      const ramp = page
        .getByRole("listitem")
        .filter({ hasText: "UpdateExperiment" })
        .filter({ has: page.getByRole("cell", { name: "rollout" }) });
      await poll(() => ramp.count()).toBe(1);
      expect(await ramp.textContent()).toContain("admin-person");
      const cells = await ramp
        .getByRole("row", { name: /^rollout/ })
        .getByRole("cell")
        .allTextContents();
      expect(cells).toEqual(["rollout", "10000", "2500"]);
      await shot(page, "history");
      await page.getByRole("link", { name: "Jobs" }).click();
      const jobRow = page.getByRole("row").filter({ hasText: job!.id.slice(0, 8) });
      await poll(() => jobRow.count()).toBe(1);
      await poll(() => jobRow.getByRole("progressbar").count()).toBe(1);
      await poll(() => jobRow.textContent(), 60_000).toContain("2,000 of 2,000 units");
      await shot(page, "jobs");
      expect(errors).toEqual([]);
      await context.close();
    } finally {
      cohorts.close();
      jobs.close();
    }
  });
});

describe("readers and operators", () => {
  it("is offered no edit control, and the server refuses an edit anyway", async () => {
    const { context, page, errors } = await openTab();
    // By keyboard alone: Tab reaches the token field, Enter signs in.
    await page.goto(`${base}/console/`);
    await page.getByLabel("Token").waitFor();
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("token");
    await page.keyboard.type(TOKENS.reader);
    await page.keyboard.press("Enter");
    await page.getByText("role: reader").waitFor();
    await page.getByRole("link", { name: "lookup-banner" }).waitFor();
    expect(await page.getByText("New experiment").count()).toBe(0);
    await page.getByRole("link", { name: "lookup-banner" }).click();
    await page.getByTestId("read-only").waitFor();
    for (const name of ["Start", "Pause", "Stop", "Change weights", "Save params"]) {
      expect(await page.getByRole("button", { name }).count(), name).toBe(0);
    }
    expect(await page.getByLabel("Share of eligible units enrolled (%)").count()).toBe(0);
    await page.getByRole("link", { name: "Namespaces" }).click();
    await page.getByRole("heading", { name: /checkout-ns/ }).waitFor();
    expect(await page.getByRole("button", { name: "Allocate" }).count()).toBe(0);
    await page.getByRole("link", { name: "Holdouts" }).click();
    await page.getByRole("heading", { name: /ho-console/ }).waitFor();
    expect(await page.getByRole("button", { name: "Change share" }).count()).toBe(0);
    // The server decides, whatever the page offers: the reader's token cannot pause it.
    const version = (await admin.getExperiment({ key: "lookup-banner" })).experiment!.version;
    const status = await page.evaluate(
      async ([token, v]) => {
        const r = await fetch("/assignment.v1.ExperimentService/UpdateExperiment", {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: JSON.stringify({ key: "lookup-banner", version: v, status: "EXPERIMENT_STATUS_PAUSED" }),
        });
        return r.status;
      },
      [TOKENS.reader, String(version)] as const,
    );
    expect(status).toBe(403);
    expect((await admin.getExperiment({ key: "lookup-banner" })).experiment!.status).toBe(ExperimentStatus.RUNNING);
    expect(errors).toEqual([]);
    await context.close();
  });

  it("an operator is offered the running of an experiment but not its weights or params", async () => {
    const { context, page, errors } = await openTab();
    await signIn(page, TOKENS.operator);
    await page.getByText("role: operator").waitFor();
    expect(await page.getByText("New experiment").count()).toBe(0);
    await page.getByRole("link", { name: "lookup-banner" }).click();
    await page.getByRole("button", { name: "Pause" }).waitFor();
    expect(await page.getByLabel("Share of eligible units enrolled (%)").count()).toBe(1);
    expect(await page.getByText("Weights and params are changed with an admin token.").count()).toBe(1);
    for (const name of ["Change weights", "Save params"]) expect(await page.getByRole("button", { name }).count(), name).toBe(0);
    expect(errors).toEqual([]);
    await context.close();
  });

  it("is refused at sign-in with a token the server does not know", async () => {
    const { context, page } = await openTab();
    await page.goto(`${base}/console/`);
    await page.getByLabel("Token").fill("not-a-token-of-this-server");
    await page.getByRole("button", { name: "Sign in" }).click();
    await poll(() => page.getByRole("alert").textContent()).toContain("did not accept the token");
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await context.close();
  });
});

// Generous limits: the whole suite runs beside these tests on a shared machine.
describe("1,000 experiments", { timeout: 240_000 }, () => {
  it("lists, filters and searches them; the page load is measured and reported", async () => {
    const keys = Array.from({ length: 1000 }, (_, i) => `bulk-${String(i).padStart(4, "0")}`);
    for (let i = 0; i < keys.length; i += 25) {
      await Promise.all(
        keys.slice(i, i + 25).map((key, j) =>
          admin.createExperiment({
            key,
            variants: [
              { key: "a", weight: 5000 },
              { key: "b", weight: 5000 },
            ],
            tags: [`team-${(i + j) % 10}`],
            status: (i + j) % 10 === 0 ? ExperimentStatus.RUNNING : ExperimentStatus.DRAFT,
          }),
        ),
      );
    }
    const total = (await admin.listExperiments({})).experiments.length;
    const { context, page, errors } = await openTab();
    await signIn(page, TOKENS.admin);
    const loads: number[] = [];
    for (let i = 0; i < 3; i++) {
      await page.goto("about:blank");
      const started = Date.now();
      await page.goto(`${base}/console/#/experiments`);
      await page.getByText(`${total} of ${total} experiments`).waitFor();
      loads.push(Date.now() - started);
    }
    // 100 rows a page; the filters narrow the whole list.
    expect(await page.locator("table.experiments tbody tr").count()).toBe(100);
    await shot(page, "experiments", false);
    await page.getByLabel("Search").fill("bulk-0999");
    await page.getByText(`1 of ${total} experiments`).waitFor();
    await page.getByLabel("Search").fill("");
    await page.getByLabel("Tag", { exact: true }).selectOption("team-3");
    await page.getByText(`100 of ${total} experiments`).waitFor();
    await page.getByLabel("Tag", { exact: true }).selectOption("");
    await page.getByLabel("Status", { exact: true }).selectOption("running");
    const running = (await admin.listExperiments({ status: ExperimentStatus.RUNNING })).experiments.length;
    await page.getByText(`${running} of ${total} experiments`).waitFor();
    const nav = await page.evaluate(() => {
      const n = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming;
      return { domContentLoaded: n.domContentLoadedEventEnd, listed: (window as { consoleListedAt?: number }).consoleListedAt };
    });
    const report = { experiments: total, loadsMs: loads, lastNavigation: nav };
    writeFileSync(join(SHOTS, "page-load.json"), JSON.stringify(report, null, 2));
    console.log(`console: ${total} experiments listed in ${loads.join(", ")} ms (reload to table); ${JSON.stringify(nav)}`);
    expect(errors).toEqual([]);
    await context.close();
  });
});
