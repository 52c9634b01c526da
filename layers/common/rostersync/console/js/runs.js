// What several pages show of a run: its progress while it works, its hold reasons, and the
// admin's decisions on it (commit, discard, approve, undo), waited for until they settle.

import { ApiError, decide, post, tenantPath } from "./api.js";
import { announce, h, notice, replace, showValue } from "./dom.js";

const STEP_NAMES = {
  fetch: "Fetching the bundle",
  normalize: "Reading the files",
  match: "Matching people and classes",
  stage: "Preparing the changes",
  commit: "Committing",
};

export function stepOf(run) {
  const step = run?.progress?.step || run?.step || run?.current_step;
  if (step) return STEP_NAMES[step] || step;
  return run?.status === "committing" ? "Committing" : "Working";
}

/** A live view of a run that is still working: its step and its counts so far. */
export function progressView(run) {
  const counts = run?.progress?.counts || {};
  const entries = Object.entries(counts);
  return h(
    "div",
    { class: "progress", id: "run-progress", dataset: { run: run.run_id } },
    h("p", {}, h("strong", { id: "run-step" }, stepOf(run)), ` — run ${run.run_id} is ${run.status}.`),
    h("progress", { "aria-label": `Run ${run.run_id}: ${stepOf(run)}` }),
    entries.length
      ? h(
          "ul",
          { class: "inline-list", "aria-label": "Counts so far" },
          entries.map(([name, value]) => h("li", {}, `${name}: ${showValue(value)}`)),
        )
      : null,
  );
}

export function holdReasons(report) {
  const reasons = report?.hold || [];
  if (!reasons.length) return null;
  return h(
    "ul",
    { class: "reasons", "aria-label": "Why the run was held" },
    reasons.map((reason) =>
      h("li", {}, typeof reason === "string" ? reason : reason.message || `${reason.check} (${reason.entity || "bundle"})`),
    ),
  );
}

const VERBS = {
  commit: ["Commit", "Committing…", "committed"],
  discard: ["Discard", "Discarding…", "discarded"],
  approve: ["Approve", "Preparing the held changes…", "approved"],
  undo: ["Undo this run", "Preparing the undo…", "prepared to undo"],
};

/**
 * A button deciding about ``run``: posts the decision, shows the step while the API
 * finishes it (at once, or in the background with 202), then calls ``done(detail)``.
 */
export function decisionButton(kind, run, statusEl, done, { confirmText } = {}) {
  const [label, working] = VERBS[kind];
  const button = h("button", { type: "button", class: kind === "discard" ? "danger" : "primary", dataset: { decision: kind } }, label);
  button.addEventListener("click", async () => {
    if (confirmText && !window.confirm(confirmText)) return;
    button.disabled = true;
    replace(statusEl, h("p", {}, working));
    try {
      const path = tenantPath(`/runs/${run.run_id}/${kind}`);
      let detail;
      if (kind === "discard") {
        await post(path);
      } else {
        const settled = await decide(path, undefined, run.run_id, (progress) => {
          replace(statusEl, progressView(progress));
        });
        detail = settled.detail;
      }
      const finished = detail?.run || { run_id: run.run_id, status: VERBS[kind][2] };
      replace(statusEl, notice("ok", `Run ${finished.run_id} is ${finished.status}.`));
      announce(`Run ${finished.run_id} is ${finished.status}.`);
      done(detail);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
      button.disabled = false;
      replace(statusEl, notice("error", `${label} failed: ${error.message}`));
    }
  });
  return button;
}
