"""``make run``: set up and start the whole portal on one machine.

Starts the embedded Redis when REDIS_URL is unset, migrates, loads the demo
business into an empty database, then runs web (gunicorn), an RQ worker and
the ``rq cron`` scheduler together. Ctrl-C stops all of them.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from honcho.manager import Manager
from honcho.printer import Printer

from portal import config as config_module

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    port = os.environ.get("PORT", "5000")
    host = os.environ.get("HOST", "127.0.0.1")
    try:
        settings = config_module.from_environment()
    except config_module.ConfigError as error:
        print(f"portal: {error}", file=sys.stderr)
        return 2
    redis_process = None
    env = dict(os.environ)
    if settings["EMBEDDED_REDIS"]:
        from portal.embedded import ensure_redis

        socket = config_module.embedded_redis_socket(Path(settings["PORTAL_INSTANCE_PATH"]))
        redis_process = ensure_redis(socket, daemonize=False)
        env["REDIS_URL"] = settings["REDIS_URL"]
    if host not in ("0.0.0.0", "::", ""):
        # Links in emails come from PORTAL_BASE_URL, and only its host (with the loopback names) is served.
        # Listening on every interface: leave it unset (any host served, links to 127.0.0.1:$PORT)
        # unless it was set.
        env.setdefault("PORTAL_BASE_URL", f"http://{host}:{port}")
    os.environ.update(env)  # this process migrates and loads the demo with the same settings

    from flask_migrate import upgrade

    from portal import create_app
    from portal.services import demo

    app = create_app()
    logins = None
    with app.app_context():
        upgrade()
        if demo.database_is_empty():
            logins = demo.load_demo()

    python = sys.executable
    bin_dir = Path(python).parent
    manager = Manager(Printer(sys.stdout))
    manager.add_process(
        "web",
        f"{bin_dir / 'gunicorn'} --bind {host}:{port} --workers 2 --threads 4 --access-logfile - wsgi:app",
        env=env, cwd=str(ROOT),
    )
    manager.add_process("worker", f"{python} worker.py", env=env, cwd=str(ROOT))
    manager.add_process(
        "scheduler", f"{bin_dir / 'rq'} cron portal/jobs/cron.py --url {env['REDIS_URL']}", env=env, cwd=str(ROOT)
    )

    print("", flush=True)
    print(f"  Portal running at http://{host}:{port}/", flush=True)
    print(f"  Staff portal:   http://{host}:{port}/staff/login", flush=True)
    print(f"  Client portal:  http://{host}:{port}/portal/login", flush=True)
    if logins is None:
        logins = {"owner": demo.OWNER, "staff": demo.STAFF, "client": demo.CLIENT}
        print("  Demo logins (if the demo was loaded earlier):", flush=True)
    for role, (email, password) in logins.items():
        print(f"    {role:<7} {email} / {password}", flush=True)
    print("  Emails are kept on the staff Emails page (no MAIL_SERVER set)." if not settings["MAIL_SERVER"]
          else f"  Emails go out through {settings['MAIL_SERVER']}.", flush=True)
    print("  Press Ctrl-C to stop.\n", flush=True)
    try:
        manager.loop()
    finally:
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(timeout=10)
    return manager.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
