"""The staff view: server-rendered pages for commissioners, case managers, clinical leads and
finance leads, scoped to the signed-in organisation (docs/staff.md)."""
