// Directory: the committed roster — schools, teachers, students, guardians, staff and
// classes — with search and filters, and a record's page (its links and last change).

import { allDirectory } from "../api.js";
import { facts, h, recordName, replace, showValue, statusBadge, table } from "../dom.js";

const GUARDIAN_ROLES = new Set(["guardian", "parent", "relative"]);
const KINDS = {
  schools: { label: "Schools", entity: "orgs", keep: () => true },
  teachers: { label: "Teachers", entity: "users", keep: (r) => r.role === "teacher" },
  students: { label: "Students", entity: "users", keep: (r) => r.role === "student" },
  guardians: { label: "Guardians", entity: "users", keep: (r) => GUARDIAN_ROLES.has(r.role) },
  staff: { label: "Staff", entity: "users", keep: (r) => r.role && !GUARDIAN_ROLES.has(r.role) && !["teacher", "student"].includes(r.role) },
  classes: { label: "Classes", entity: "classes", keep: () => true },
};
const SHOWN = 200;

function searchable(record) {
  return [
    recordName(record),
    record.email,
    record.username,
    record.identifier,
    record.class_code,
    record.course_code,
    record.source_id,
    record.target_id,
    ...(record.user_ids || []).map((u) => u.identifier),
  ]
    .filter(Boolean)
    .join(" ")
    .toLowerCase();
}

function schoolsOf(record) {
  return record.org_source_ids || [record.school_source_id, record.org_source_id].filter(Boolean);
}

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

export async function render(main, { params, query }) {
  const kind = KINDS[params[0]] ? params[0] : "students";
  if (params[1]) return renderRecord(main, kind, params[1]);
  const spec = KINDS[kind];
  const [records, orgs] = await Promise.all([allDirectory(spec.entity), spec.entity === "orgs" ? null : allDirectory("orgs")]);
  const schoolNames = new Map((orgs || records).map((o) => [o.source_id, o.name]));
  const items = records.filter(spec.keep).sort((a, b) => recordName(a).localeCompare(recordName(b)));
  const grades = [...new Set(items.flatMap((r) => r.grades || []))].sort();

  const search = h("input", { type: "search", id: "directory-search", value: query.get("q") || "", autocomplete: "off", "aria-describedby": "search-help" });
  const school = h(
    "select",
    { id: "directory-school" },
    h("option", { value: "" }, "every school"),
    [...schoolNames].filter(([, name]) => name).map(([id, name]) => h("option", { value: id }, name)),
  );
  const statusFilter = h("select", { id: "directory-state" }, [["active", "active"], ["archived", "archived"], ["", "active and archived"]].map(([v, l]) => h("option", { value: v }, l)));
  const grade = h("select", { id: "directory-grade" }, h("option", { value: "" }, "every grade"), grades.map((g) => h("option", { value: g }, g)));
  const results = h("div", { id: "directory-results", "aria-live": "polite" });

  function show() {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const found = items.filter(
      (r) =>
        words.every((w) => searchable(r).includes(w)) &&
        (!school.value || schoolsOf(r).includes(school.value) || r.source_id === school.value) &&
        (!statusFilter.value || (r.status || "active") === statusFilter.value) &&
        (!grade.value || (r.grades || []).includes(grade.value)),
    );
    const columns = [
      { label: "Name", cell: (r) => h("a", { href: `#/directory/${kind}/${encodeURIComponent(r.source_id)}` }, recordName(r, r.source_id)) },
      spec.entity === "orgs"
        ? { label: "Type", cell: (r) => r.type || "—" }
        : { label: "School", cell: (r) => schoolsOf(r).map((id) => schoolNames.get(id) || id).join(", ") || r.school || "—" },
      spec.entity === "classes"
        ? { label: "Code", cell: (r) => r.class_code || "—" }
        : { label: spec.entity === "orgs" ? "Identifier" : "Email", cell: (r) => (spec.entity === "orgs" ? r.identifier : r.email) || "—" },
      { label: "Grades", cell: (r) => (r.grades || []).join(", ") || "—" },
      { label: "Status", cell: (r) => statusBadge(r.status || "active") },
    ];
    replace(
      results,
      h("p", { id: "directory-count" }, found.length > SHOWN ? `${found.length} found; showing the first ${SHOWN}. Refine the search to see the others.` : `${found.length} found.`),
      table(`${spec.label}`, columns, found.slice(0, SHOWN), { empty: "Nothing matches.", id: "directory-table" }),
    );
  }

  for (const control of [search, school, statusFilter, grade]) control.addEventListener("input", show);
  replace(
    main,
    h("h1", {}, `Directory: ${spec.label.toLowerCase()}`),
    kindTabs(kind),
    h(
      "form",
      { class: "toolbar", role: "search", onsubmit: (event) => event.preventDefault() },
      h("label", { for: "directory-search" }, "Search"),
      search,
      h("span", { id: "search-help", class: "help" }, "name, email, id or code"),
      spec.entity !== "orgs" ? [h("label", { for: "directory-school" }, "School"), school] : null,
      h("label", { for: "directory-state" }, "Status"),
      statusFilter,
      grades.length ? [h("label", { for: "directory-grade" }, "Grade"), grade] : null,
    ),
    results,
  );
  show();
  return null;
}

function linkTo(kind, record) {
  return h("a", { href: `#/directory/${kind}/${encodeURIComponent(record.source_id)}` }, recordName(record, record.source_id));
}

function kindOf(user) {
  return Object.keys(KINDS).find((k) => KINDS[k].entity === "users" && KINDS[k].keep(user)) || "students";
}

async function renderRecord(main, kind, sourceId) {
  const spec = KINDS[kind];
  const needed = ["orgs", "users", "classes", "enrollments"];
  const [orgs, users, classes, enrollments] = await Promise.all(needed.map((e) => allDirectory(e)));
  const byEntity = { orgs, users, classes };
  const record = byEntity[spec.entity].find((r) => r.source_id === sourceId);
  if (!record) {
    replace(main, h("h1", {}, "No such record"), h("p", {}, h("a", { href: `#/directory/${kind}` }, `Back to ${spec.label.toLowerCase()}`)));
    return null;
  }
  const schoolNames = new Map(orgs.map((o) => [o.source_id, o.name]));
  const usersById = new Map(users.map((u) => [u.source_id, u]));
  const classesById = new Map(classes.map((c) => [c.source_id, c]));
  const sections = [];

  if (spec.entity === "users") {
    const mine = enrollments.filter((e) => e.user_source_id === sourceId);
    sections.push(
      section("Classes", table("Classes", [
        { label: "Class", cell: (e) => (classesById.get(e.class_source_id) ? linkTo("classes", classesById.get(e.class_source_id)) : e.class_source_id) },
        { label: "Role", cell: (e) => e.role || "—" },
        { label: "Status", cell: (e) => statusBadge(e.status || "active") },
      ], mine, { empty: "In no class.", id: "record-classes" })),
    );
    const related = GUARDIAN_ROLES.has(record.role)
      ? users.filter((u) => (u.agent_source_ids || []).includes(sourceId) || (record.agent_source_ids || []).includes(u.source_id))
      : (record.agent_source_ids || []).map((id) => usersById.get(id)).filter(Boolean);
    sections.push(
      section(GUARDIAN_ROLES.has(record.role) ? "Children" : "Guardians and contacts", table("Related people", [
        { label: "Name", cell: (u) => linkTo(kindOf(u), u) },
        { label: "Role", cell: (u) => u.role || "—" },
      ], related, { empty: "None.", id: "record-related" })),
    );
  }
  if (spec.entity === "classes") {
    const members = enrollments.filter((e) => e.class_source_id === sourceId);
    sections.push(
      section("People", table("Teachers and students", [
        { label: "Name", cell: (e) => (usersById.get(e.user_source_id) ? linkTo(kindOf(usersById.get(e.user_source_id)), usersById.get(e.user_source_id)) : e.user_source_id) },
        { label: "Role", cell: (e) => e.role || "—" },
        { label: "Status", cell: (e) => statusBadge(e.status || "active") },
      ], members.sort((a, b) => (a.role === "teacher" ? -1 : 0) - (b.role === "teacher" ? -1 : 0)), { empty: "Nobody is enrolled.", id: "record-members" })),
    );
  }
  if (spec.entity === "orgs") {
    const people = users.filter((u) => (u.org_source_ids || []).includes(sourceId));
    sections.push(
      section("People and classes", facts([
        ["Teachers", String(people.filter((u) => u.role === "teacher").length)],
        ["Students", String(people.filter((u) => u.role === "student").length)],
        ["Classes", String(classes.filter((c) => c.school_source_id === sourceId).length)],
      ])),
    );
  }
  sections.push(
    section(
      "History",
      record.run_id
        ? h("p", {}, "Last changed by run ", h("a", { href: `#/runs/${record.run_id}`, id: "record-run" }, record.run_id), ".")
        : h("p", {}, "No sync has changed it yet: it came from the app's own records."),
      h("p", { class: "help" }, "The API does not serve a record's full change history yet; each run's report lists what it changed."),
    ),
  );

  const shownFields = Object.entries(record).filter(([name]) => !["extensions"].includes(name));
  replace(
    main,
    h("p", {}, h("a", { href: `#/directory/${kind}` }, `← ${spec.label}`)),
    h("h1", {}, recordName(record, record.source_id)),
    facts([
      ["Status", statusBadge(record.status || "active")],
      ["Role", record.role || record.type || record.class_type || undefined],
      ["Email", record.email || undefined],
      ["School", schoolsOf(record).map((id) => schoolNames.get(id) || id).join(", ") || record.school || undefined],
      ["Grades", (record.grades || []).join(", ") || undefined],
      ["Identifiers", (record.user_ids || []).map((u) => `${u.type}: ${u.identifier}`).join(", ") || record.identifier || undefined],
      ["Source id", record.source_id],
      ["App id", record.target_id || "—"],
    ]),
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
