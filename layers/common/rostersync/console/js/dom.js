// Building pages from data without innerHTML: every value is set as text, so a name in a
// roster can never become markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table with a caption, column headers and one row per item. */
export function table(caption, columns, rows, { empty = "Nothing to show.", id } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { id },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            {},
            columns.map((c, i) =>
              i === 0 && c.rowHeader !== false
                ? h("th", { scope: "row" }, c.cell(row))
                : h("td", {}, c.cell(row)),
            ),
          ),
        ),
      ),
    ),
  );
}

/** Terms and their descriptions. */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs
      .filter(([, value]) => value !== undefined)
      .map(([term, value]) => [h("dt", {}, term), h("dd", {}, value ?? "—")]),
  );
}

export function notice(kind, ...children) {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : null }, ...children);
}

export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

const WAITING = new Set(["prepared", "held", "restaging"]);

function spoken(seconds) {
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${seconds % 60} s`;
}

/**
 * How long a run took. A prepared or held run has not finished: how long it took to be
 * prepared (until its last step, staging, began), with "to prepare" said.
 */
export function duration(run) {
  const start = Date.parse(run.started_at || "");
  const end = Date.parse(run.finished_at || run.committed_at || "");
  if (!Number.isNaN(start) && !Number.isNaN(end) && end >= start) return spoken(Math.round((end - start) / 1000));
  const staged = Date.parse(run.progress?.since || "");
  if (WAITING.has(run.status) && !Number.isNaN(start) && !Number.isNaN(staged) && staged >= start) {
    return `${spoken(Math.max(1, Math.round((staged - start) / 1000)))} to prepare`;
  }
  return "—";
}

export const ACTIONS = ["add", "update", "archive", "reactivate"];

export const ENTITY_NAMES = {
  orgs: "Schools",
  academic_sessions: "Terms",
  courses: "Courses",
  classes: "Classes",
  users: "People",
  enrollments: "Enrollments",
  demographics: "Demographics",
};

export function totals(counts) {
  const sum = Object.fromEntries(ACTIONS.map((a) => [a, 0]));
  for (const row of Object.values(counts || {})) {
    for (const a of ACTIONS) sum[a] += Number(row?.[a] || 0);
  }
  return sum;
}

export function countsText(counts) {
  if (!counts) return "—";
  const sum = totals(counts);
  const parts = ACTIONS.filter((a) => sum[a]).map((a) => `${sum[a]} ${a}`);
  return parts.length ? parts.join(", ") : "no changes";
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status || "unknown"}` }, status || "unknown");
}

/** A record's name as a person would say it. */
export function recordName(record, fallback = "") {
  if (!record) return fallback;
  const person = [record.preferred_given_name || record.given_name, record.family_name]
    .filter(Boolean)
    .join(" ");
  return person || record.name || record.title || record.username || fallback;
}

export function announce(text) {
  const region = document.getElementById("announce");
  if (!region) return;
  region.textContent = "";
  // A fresh text node after a tick, so screen readers read a repeated message again.
  setTimeout(() => {
    region.textContent = text;
  }, 30);
}

export function download(filename, text, type = "text/csv") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function csv(columns, rows) {
  const cell = (value) => {
    const text =
      value === null || value === undefined
        ? ""
        : typeof value === "object"
          ? JSON.stringify(value)
          : String(value);
    return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  return [columns.join(","), ...rows.map((row) => columns.map((c) => cell(row[c])).join(","))]
    .join("\r\n")
    .concat("\r\n");
}

export function showValue(value) {
  if (value === null || value === undefined || value === "") return "(empty)";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
