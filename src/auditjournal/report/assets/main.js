// main.js: draw everything, then re-hash the embedded records in the background.
  renderHeader();
  renderSummary();
  renderVerification();
  renderGraph();
  renderTimeline();
  renderOutcomes();
  renderRows();
  renderCheck();
  renderAbout();
  document.body.setAttribute("data-rendered", "1");
  checkEmbedded().catch((err) => {
    const out = document.getElementById("embedded-check");
    out.textContent = "The embedded records could not be checked: " + err;
    out.setAttribute("data-embedded-check", "error");
  });
