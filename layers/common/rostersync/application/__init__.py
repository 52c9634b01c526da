"""The use cases: what an admin, the app, a schedule or a dropped file asks of rostersync
(start a run, review it, decide a match, approve, undo, settings, tenants, inbox
arrival, schedules). The API routes and the CLI call these, never pipeline steps or
repositories; long work is handed to the state machine."""
