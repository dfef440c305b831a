"""Running a Cargo command for a target: the plan (pure), the container environment, the fetch step, and the
orchestration that ties them together."""
