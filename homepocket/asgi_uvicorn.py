"""The ASGI application as uvicorn's processes import it: bound to their parent's life first.

`uvicorn --workers N` starts its workers with multiprocessing (spawn), which asks for no
PR_SET_PDEATHSIG: a uvicorn master that was killed would leave its workers serving, holding the
port. Importing the app is the first code of ours a worker runs, so it asks Linux here to stop it
(SIGTERM: a graceful stop) when its parent goes. With one worker uvicorn serves in the process
homepocket.server started, which asked for the same already.
"""

from __future__ import annotations

from homepocket.process_guard import die_with_parent

die_with_parent()

from homepocket.asgi import application  # noqa: E402

__all__ = ["application"]
