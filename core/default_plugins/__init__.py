"""The default plugins: operations features built on the same hooks as any plugin.

`broker` (the embedded Valkey, `register_broker`), `deadletters` (`on_task_failed`),
`flower` (authenticated Flower), `demo` (`banktasks demo`, `banktasks db seed`),
`schedules` (last run/success of each beat entry, `banktasks schedules`),
`metrics` (Prometheus metrics of every task, `banktasks metrics serve`).
Each can be blocked with `BANKTASKS_DISABLE=<name>`.
"""
