"""Model cards: everything each model's card says, readable."""

import json

import dashboard as db
import streamlit as st

db.page_setup("Model cards")
st.title("Model cards")

models, problems = db.discover_models(db.settings()["models"])
for p in problems:
    st.info(p)
if not models:
    st.info("No model found. Add model directories in the sidebar (Settings).")
for m in models:
    with st.expander(
        f"{m.name} · {m.architecture} · {m.task} · {m.members} member(s)", expanded=len(models) == 1
    ):
        for path in m.cards:
            card = json.loads(open(path).read())
            data = card.get("data", {})
            training = card.get("training", {})
            st.markdown(
                f"**{path}**  \n"
                f"Trained on: {data.get('source', 'unknown')}{' (SYNTHETIC)' if data.get('synthetic') else ''} · "
                f"fold {training.get('fold', '–')} · split seed {training.get('split_seed', '–')} · "
                f"epochs {training.get('epochs', '–')}  \n"
                f"Metrics: `{json.dumps(card.get('metrics', {}))}`  \n"
                f"Weights sha256: `{card.get('weights_sha256', '')[:16]}…`"
            )
            st.json(card, expanded=False)

db.page_footer()
