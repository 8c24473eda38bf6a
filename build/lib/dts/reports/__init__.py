"""Reports: frozen dataclasses built by pure functions, rendered to text lines and to JSON here and nowhere
else. The data model first, then one module per report, then the console they are shown on.

    from dts.reports.dispatch_report import dispatch_report, render_dispatch
    report = dispatch_report(settings, rounds)
    print("\\n".join(render_dispatch(report)))       # or json.dumps(report.to_json())

samples      Sample and SampleTable: a load's tasks, one at a time or in columns
documents    the schema version, a result file's envelope, JSON written item by item (Stream)
verdict      a run's exit code and its one-line error (a lost broker, a lost pool)
dispatch     one dispatch: each task's outcome, the summary table and totals
load         a load test: latency distributions, efficiency, thresholds, its runs and their sweep table
status       status and health: per pool, per queue, per worker; the verdict; tasks/s between refreshes
deadletters  the dead letters of each queue, what a replay, purge or migration did
console      a person at a terminal or not; the one table renderer (plain lines or a rich Table)

Nothing here talks to the broker, imports Celery or an entry point: besides itself the package imports
dts.config, dts.errors, dts.naming and dts.app.conf (and rich, on a terminal).
"""
