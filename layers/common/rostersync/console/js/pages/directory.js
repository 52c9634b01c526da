// Directory: the committed roster — schools, teachers, students, guardians, staff and
// classes — searched by the API (name, email, ids, codes; status, role, school), and a
// record's page: its identifiers, its link to the source, its classes or people, and its
// history across runs (which run added, changed or archived it, and why).

import { allDirectory, get, tenantPath } from "../api.js";
import { facts, h, recordName, replace, showValue, statusBadge, table, when } from "../dom.js";

const GUARDIAN_ROLES = ["guardian", "parent", "relative"];
const STAFF_ROLES = ["administrator", "aide", "proctor"];
const KINDS = {
  schools: { label: "Schools", entity: "orgs" },
  teachers: { label: "Teachers", entity: "users", roles: ["teacher"] },
  students: { label: "Students", entity: "users", roles: ["student"] },
  guardians: { label: "Guardians", entity: "users", roles: GUARDIAN_ROLES },
  staff: { label: "Staff", entity: "users", roles: STAFF_ROLES },
  classes: { label: "Classes", entity: "classes" },
};
const SHOWN = 100;

function kindTabs(active) {
  return h(
    "nav",
    { class: "tabs", "aria-label": "Kinds of record" },
    h(
      "ul",
      {},
      Object.entries(KINDS).map(([kind, { label }]) =>
        h("li", {}, h("a", { href: `#/directory/${kind}`, "aria-current": kind === active ? "page" : null }, label)),
      ),
    ),
  );
}

function kindOfRole(role, entity) {
  if (entity === "orgs") return "schools";
  if (entity === "classes") return "classes";
  return Object.keys(KINDS).find((k) => (KINDS[k].roles || []).includes(role)) || "students";
}

function recordLink(kind, targetId, text) {
  return h("a", { href: `#/directory/${kind}/${encodeURIComponent(targetId)}` }, text);
}

export async function render(main, { params, query }) {
  const kind = KINDS[params[0]] ? params[0] : "students";
  if (params[1]) return renderRecord(main, kind, params[1]);
  const spec = KINDS[kind];
  const orgs = await allDirectory("orgs");
  const schoolNames = new Map(orgs.map((o) => [o.source_id, o.name]));

  const search = h("input", { type: "search", id: "directory-search", value: query.get("q") || "", autocomplete: "off", "aria-describedby": "search-help" });
  const school = h(
    "select",
    { id: "directory-school" },
    h("option", { value: "" }, "every school"),
    orgs.filter((o) => o.name).map((o) => h("option", { value: o.source_id }, o.name)),
  );
  const statusFilter = h("select", { id: "directory-state" }, [["active", "active"], ["archived", "archived"], ["", "active and archived"]].map(([v, l]) => h("option", { value: v }, l)));
  const results = h("div", { id: "directory-results", "aria-live": "polite" });
  let asked = 0;

  async function show() {
    const mine = ++asked;
    const page = await get(tenantPath(`/directory/${spec.entity}`), {
      q: search.value.trim(),
      role: (spec.roles || []).join(","),
      status: statusFilter.value,
      school: spec.entity === "orgs" ? "" : school.value,
      limit: SHOWN,
    });
    if (mine !== asked) return; // a newer search has been asked for
    const found = page.items.sort((a, b) => recordName(a).localeCompare(recordName(b)));
    const total = page.total ?? (page.next_offset ? `${found.length}+` : found.length);
    const columns = [
      { label: "Name", cell: (r) => recordLink(kind, r.target_id, recordName(r, r.source_id)) },
      spec.entity === "orgs"
        ? { label: "Type", cell: (r) => r.type || "—" }
        : { label: "School", cell: (r) => (r.org_source_ids || [r.school_source_id].filter(Boolean)).map((id) => schoolNames.get(id) || id).join(", ") || "—" },
      spec.entity === "classes"
        ? { label: "Code", cell: (r) => r.class_code || "—" }
        : { label: spec.entity === "orgs" ? "Identifier" : "Email", cell: (r) => (spec.entity === "orgs" ? r.identifier : r.email) || "—" },
      kind === "students" || spec.entity !== "users"
        ? { label: "Grades", cell: (r) => (r.grades || []).join(", ") || "—" }
        : { label: "Role", cell: (r) => r.role || "—" },
      { label: "Status", cell: (r) => statusBadge(r.status || "active") },
    ];
    replace(
      results,
      h("p", { id: "directory-count" }, (typeof total === "string" || total > found.length) ? `${total} found; showing the first ${found.length}. Refine the search to see the others.` : `${total} found.`),
      table(spec.label, columns, found, { empty: "Nothing matches.", id: "directory-table" }),
    );
  }

  let timer = null;
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(() => show().catch(() => {}), 300);
  };
  search.addEventListener("input", later);
  for (const control of [school, statusFilter]) control.addEventListener("change", later);
  replace(
    main,
    h("h1", {}, `Directory: ${spec.label.toLowerCase()}`),
    kindTabs(kind),
    h(
      "form",
      { class: "toolbar", role: "search", "aria-label": `Filter ${spec.label.toLowerCase()}`, onsubmit: (event) => { event.preventDefault(); show(); } },
      h("label", { for: "directory-search" }, "Search"),
      search,
      h("span", { id: "search-help", class: "help" }, "name, email, id or code"),
      spec.entity !== "orgs" ? [h("label", { for: "directory-school" }, "School"), school] : null,
      h("label", { for: "directory-state" }, "Status"),
      statusFilter,
    ),
    results,
  );
  await show();
  return () => clearTimeout(timer);
}

function changesText(changes) {
  const entries = Object.entries(changes || {});
  if (!entries.length) return "—";
  return h(
    "ul",
    { class: "changes" },
    entries.map(([field, pair]) => {
      const [before, after] = Array.isArray(pair) ? pair : [undefined, pair];
      return h("li", {}, h("span", { class: "field" }, field), ": ", h("del", {}, showValue(before)), " → ", h("ins", {}, showValue(after)));
    }),
  );
}

async function renderRecord(main, kind, targetId) {
  const spec = KINDS[kind];
  let view;
  try {
    view = await get(tenantPath(`/directory/${spec.entity}/${encodeURIComponent(targetId)}`));
  } catch (error) {
    if (error?.status !== 404) throw error;
    replace(main, h("h1", {}, "No such record"), h("p", {}, h("a", { href: `#/directory/${kind}` }, `Back to ${spec.label.toLowerCase()}`)));
    return null;
  }
  const record = view.record;
  const sections = [];
  if (spec.entity === "users") {
    sections.push(
      section("Classes", table("Classes", [
        { label: "Class", cell: (e) => (e.class?.target_id ? recordLink("classes", e.class.target_id, e.class.name || e.class.source_id) : e.class?.source_id || "—") },
        { label: "Role", cell: (e) => e.role || "—" },
        { label: "Status", cell: (e) => statusBadge(e.status) },
      ], view.enrollments, { empty: "In no class.", id: "record-classes" })),
      section(GUARDIAN_ROLES.includes(record.role) ? "Children" : "Guardians and contacts", table("Related people", [
        { label: "Name", cell: (u) => (u.target_id ? recordLink(kindOfRole(u.role, "users"), u.target_id, u.name || u.source_id) : u.source_id) },
        { label: "Role", cell: (u) => u.role || "—" },
        { label: "Status", cell: (u) => statusBadge(u.status) },
      ], view.related, { empty: "None.", id: "record-related" })),
    );
  }
  if (spec.entity === "classes") {
    const people = [...view.enrollments].sort((a, b) => (a.role === "teacher" ? -1 : 0) - (b.role === "teacher" ? -1 : 0));
    sections.push(
      section("People", table("Teachers and students", [
        { label: "Name", cell: (e) => (e.user?.target_id ? recordLink(kindOfRole(e.user.role, "users"), e.user.target_id, e.user.name || e.user.source_id) : e.user?.source_id || "—") },
        { label: "Role", cell: (e) => e.role || "—" },
        { label: "Status", cell: (e) => statusBadge(e.status) },
      ], people, { empty: "Nobody is enrolled.", id: "record-members" })),
    );
  }
  sections.push(
    section(
      "History",
      h("p", { class: "help" }, "What each sync did to this record, newest first (prepared and held runs: what they would do)."),
      table("The record's history across runs", [
        { label: "Run", cell: (e) => h("a", { href: `#/runs/${e.run_id}` }, when(e.started_at)) },
        { label: "Action", cell: (e) => h("span", { class: `badge action-${e.action}` }, e.action) },
        { label: "Why", cell: (e) => e.why || e.reason || "—" },
        { label: "Before → after", cell: (e) => changesText(e.changes) },
        { label: "Run status", cell: (e) => [statusBadge(e.run_status), e.included === false ? " (left out)" : ""] },
        { label: "By", cell: (e) => e.committed_by || e.requested_by || e.trigger || "—" },
      ], view.history, { empty: "No sync has changed it: it came from the app's own records.", id: "record-history" }),
    ),
  );

  const shownFields = Object.entries(record).filter(([name]) => name !== "extensions");
  replace(
    main,
    h("p", {}, h("a", { href: `#/directory/${kind}` }, `← ${spec.label}`)),
    h("h1", {}, view.name || record.source_id || record.target_id),
    facts([
      ["Status", statusBadge(record.status || "active")],
      ["Role", record.role || record.type || record.class_type || undefined],
      ["School", view.schools.map((s) => s.name || s.source_id).join(", ") || undefined],
      ["Grades", (record.grades || []).join(", ") || undefined],
      ["Linked to", view.link ? `${view.link.source_system} record ${view.link.source_id}` : "no source record (an app record)"],
    ]),
    section("Identifiers", h("ul", { class: "inline-list", id: "record-identifiers" }, view.identifiers.map((i) => h("li", {}, h("strong", {}, `${i.type}: `), i.value)))),
    sections,
    h(
      "details",
      {},
      h("summary", {}, "Every field"),
      facts(shownFields.map(([name, value]) => [name, showValue(value)])),
    ),
  );
  return null;
}

function section(title, ...content) {
  const id = `sec-${title.toLowerCase().replace(/[^a-z]+/g, "-")}`;
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), ...content);
}
