from matrix.cli import app

app(prog_name="matrix")
