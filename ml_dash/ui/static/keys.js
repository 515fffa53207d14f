// Keyboard: "/" focuses the search box of the view, "j"/"k" move the selection in lists, "?" help.

const HELP = "Keys: / search, j / k next / previous row, Enter open, ? this help, Esc close";

export function installKeys() {
  const onKey = (event) => {
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.key === "/") {
      const search = document.querySelector("[data-search]");
      if (search) { event.preventDefault(); search.focus(); }
    } else if (event.key === "j" || event.key === "k") {
      window.dispatchEvent(new CustomEvent("ml-dash:move", { detail: event.key === "j" ? 1 : -1 }));
    } else if (event.key === "Enter") {
      window.dispatchEvent(new Event("ml-dash:open"));
    } else if (event.key === "?") {
      const help = document.getElementById("help");
      if (help) help.remove();
      else {
        const box = document.createElement("div");
        box.id = "help";
        box.className = "help";
        box.textContent = HELP;
        document.body.appendChild(box);
      }
    } else if (event.key === "Escape") {
      const help = document.getElementById("help");
      if (help) help.remove();
    }
  };
  window.addEventListener("keydown", onKey);
  return () => window.removeEventListener("keydown", onKey);
}
