"""Model cards: everything each model's card says, readable."""

import json

import dashboard as db
import streamlit as st

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
        for path, card in zip(m.card_paths, m.cards):
            st.markdown(
                f"**{path}**  \n"
                f"Trained on: {card.data.get('source', 'unknown')}{' (SYNTHETIC)' if card.synthetic else ''} · "
                f"fold {card.fold if card.fold is not None else '–'} · split seed "
                f"{card.split_seed if card.split_seed is not None else '–'} · "
                f"epochs {card.training.get('epochs', '–')}  \n"
                f"Metrics: `{json.dumps(card.metrics)}`  \n"
                f"Weights sha256: `{(card.weights_sha256 or '')[:16]}…`"
            )
            st.json(card.to_dict(), expanded=False)

