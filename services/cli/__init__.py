"""The `dooralert` command and the dev launcher: the top floor, importing the services."""
