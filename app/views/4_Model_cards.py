"""Model cards: each model's card in the sections of Mitchell et al.'s model cards (hyperfusion.training.cards),
with the numbers of the evaluation reports that measured it; the raw card.json of each member below."""

import dashboard as db
import streamlit as st

from hyperfusion.training.cards import card_sections, member_labels

st.title("Model cards")
st.caption(
    "Sections after Mitchell et al. (2019), *Model Cards for Model Reporting*. Test metrics, reliance and "
    "faithfulness come from the evaluation reports that measured the model, named in each line."
)

s = db.settings()
models, problems = db.discover_models(s["models"])
for p in problems:
    st.info(p)
if not models:
    st.info("No model found. Add model directories in the sidebar (Settings).")
found, _ = db.reports_of(s["assets"])
for m in models:
    with st.expander(
        f"{m.name} · {m.architecture} · {m.task} · {m.members} member(s)", expanded=len(models) == 1
    ):
        for heading, text in card_sections(m.cards, m.name, m.architecture, found):
            st.markdown(f"#### {heading}\n{text}")
        st.markdown("#### Raw card.json")
        members = member_labels(m.cards)
        member = st.selectbox(
            "Member", range(len(members)), format_func=members.__getitem__, key=f"raw_{m.name}"
        )
        st.json(m.cards[member].to_dict(), expanded=False)
