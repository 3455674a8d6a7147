"""`ghpo serve <service>`: run one ghpo service under uvicorn.

Every service package exposes `settings.Settings` (read from GHPO_<SERVICE>_* environment variables)
and `app.create_app(settings)`. Command-line flags override the environment for host and port only;
everything else is configured through the environment, as in the compose file and Kubernetes manifests.
`ghpo serve SERVICE --help` lists every variable the service reads, with its bounds and default
(generated from the settings class: ghpo.config_reference).
"""

from __future__ import annotations

import argparse
import importlib

from ghpo.errors import CliError

SERVICES = ("verifier", "broker", "inference", "rollout")
DESCRIPTIONS = {
    "verifier": "Scores completions against gold answers with math-verify (POST /v1/verify).",
    "broker": "Holds each prompt's hint-level state in Redis and plans hint levels (POST /v1/plan).",
    "inference": "Generates completions with vLLM and takes weight updates (POST /v1/generate).",
    "rollout": "Runs the GHPO sampling loop and queues scored groups for the trainer (GET /v1/batches/next).",
}


def _settings_help(service: str):
    def epilog() -> str:
        from ghpo.config_reference import settings_help

        return settings_help(service)

    return epilog


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run one service (" + ", ".join(SERVICES) + ")",
        description="Run one service; its settings come from GHPO_<SERVICE>_* environment variables "
        "(`ghpo serve SERVICE --help` lists them).",
    )
    services = p.add_subparsers(dest="service", metavar="SERVICE", required=True)
    for name in SERVICES:
        s = services.add_parser(
            name, help=DESCRIPTIONS[name], description=DESCRIPTIONS[name], epilog_from=_settings_help(name)
        )
        s.add_argument("--host", help=f"bind address (default: GHPO_{name.upper()}_HOST or 127.0.0.1)")
        s.add_argument("--port", type=int, help=f"port (default: GHPO_{name.upper()}_PORT)")
        s.set_defaults(func=run)


def load_settings(service: str, **overrides):
    """The service's Settings from the environment plus flag overrides; errors name the variable."""
    from ghpo.shared.settings import SettingsError, build_settings

    settings_cls = importlib.import_module(f"ghpo.services.{service}.settings").Settings
    try:
        return build_settings(settings_cls, **{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise CliError(f"invalid {service} settings: {exc}") from None


def run(args: argparse.Namespace) -> int:
    import uvicorn

    settings = load_settings(args.service, host=args.host, port=args.port)
    app = importlib.import_module(f"ghpo.services.{args.service}.app").create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    # Bind before the app starts: a taken port ends the process at once (uvicorn logs the error, exit 3),
    # not after the lifespan has started its work (datasets, the vLLM engine, background tasks). Seen:
    # a rollout server that lost its port hung unwinding that work until `ghpo run` gave up after 300 s.
    sock = config.bind_socket()
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 3  # 3: uvicorn's startup failure (the lifespan raised)
