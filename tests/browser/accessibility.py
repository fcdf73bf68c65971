"""Small automated checks of what keyboard and screen-reader users need on every page."""

from __future__ import annotations

from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

_PROBLEMS = """
const problems = [];
if (!document.documentElement.lang) problems.push('the page has no lang');
if (document.querySelectorAll('main h1').length !== 1) problems.push('main needs one h1');
for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  const named = el.labels.length || el.getAttribute('aria-label')
    || el.getAttribute('aria-labelledby');
  if (!named) problems.push('no label: ' + el.outerHTML);
}
for (const el of document.querySelectorAll('[onclick], [role=button], a:not([href]), [tabindex]')) {
  if (el.id === 'main') continue;  // the skip link's target
  problems.push('not a real control: ' + el.outerHTML);
}
for (const el of document.querySelectorAll('button, a[href]')) {
  if (!el.textContent.trim() && !el.getAttribute('aria-label')) {
    problems.push('no name: ' + el.outerHTML);
  }
}
for (const el of document.querySelectorAll('button')) {
  if (!el.closest('form')) problems.push('a button outside a form: ' + el.outerHTML);
}
const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
if (new Set(ids).size !== ids.length) problems.push('duplicate ids');
return problems;
"""

_CONTROLS = """
const wanted = [...document.querySelectorAll(
  'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select, textarea')];
wanted.forEach((el, i) => {
  el.dataset.tabCheck = el.type === 'radio' ? 'radio:' + el.name : String(i);
});
return [...new Set(wanted.map(el => el.dataset.tabCheck))];
"""


def problems(driver: WebDriver) -> list[str]:
    found: list[str] = driver.execute_script(_PROBLEMS)
    return found


def unreachable_by_tab(driver: WebDriver) -> set[str]:
    """The controls (a radio group counting as one) that pressing Tab never reaches."""
    wanted = set(driver.execute_script(_CONTROLS))
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    reached: set[str] = set()
    keys = ActionChains(driver)
    # A URL fragment moves where Tab starts, so go round the page more than once if need be.
    for _ in range(3 * (len(wanted) + 3)):
        keys.send_keys(Keys.TAB).perform()
        mark = driver.execute_script("return document.activeElement.dataset.tabCheck || null")
        if mark:
            reached.add(mark)
        if reached == wanted:
            break
    return wanted - reached


def assert_accessible(driver: WebDriver) -> None:
    assert problems(driver) == []
    assert unreachable_by_tab(driver) == set()
