// Progressive enhancement only: every page works without this file.
// - "choose all" for bulk decisions on the applications list;
// - a confirmation before an irreversible step (forms with data-confirm).
document.addEventListener("DOMContentLoaded", () => {
  const all = document.querySelector("[data-choose-all]");
  if (all) {
    all.hidden = false;
    all.querySelector("input").addEventListener("change", (event) => {
      document.querySelectorAll('input[name="registration_id"]').forEach((box) => {
        box.checked = event.target.checked;
      });
    });
  }
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
});
