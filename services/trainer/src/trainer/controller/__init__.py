"""The retrain controller (`trainer controller`): Alertmanager webhooks in, guarded training runs out.

It is a subcommand of the trainer image, so the Jobs it launches run the very same code and the alias
is only ever moved by one code path (the trainer's gate, promotion and rollback). Modules: `config`
(settings), `webhook` (the request body), `decide` (the guard rails, pure), `state` (where the guard
rails live: a file or a ConfigMap), `launchers` (a local process or a Kubernetes Job), `events`,
`metrics`, `service` (one decision from end to end) and `app` (HTTP and the periodic checks).
"""
