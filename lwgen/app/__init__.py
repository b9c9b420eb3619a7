"""Helpers behind the Streamlit pages: every computation a page shows lives here or in lwgen.projection."""
