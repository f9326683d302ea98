"""The Python `identity` library's sample shape, for the comparison rows of the bench.

`/` requires a signed-in user and shows the `name` claim; the library serves the login
page, the callback at the path of REDIRECT_URI and `/logout`. Sessions live in
Flask-Session's filesystem store without pruning (SESSION_FILE_THRESHOLD=0), as in the
reference measurement. Configured from the environment by the bench.
"""

import os

import identity.flask
from flask import Flask
from markupsafe import escape

app = Flask(__name__)
app.config["SESSION_TYPE"] = "filesystem"
app.config["SESSION_FILE_DIR"] = os.environ["SESSION_FILE_DIR"]
app.config["SESSION_FILE_THRESHOLD"] = 0
app.config["SECRET_KEY"] = os.environ["SESSION_SECRET"]

auth = identity.flask.Auth(
    app,
    oidc_authority=os.environ["OIDC_AUTHORITY"],
    client_id=os.environ["CLIENT_ID"],
    client_credential=os.environ["CLIENT_SECRET"],
    redirect_uri=os.environ["REDIRECT_URI"],
)


@app.route("/")
@auth.login_required
def index(*, context):
    return f"Hello {escape(context['user'].get('name', ''))}"
