#!/usr/bin/python3
"""The page of `sine serve` in a real browser (Debian's Chromium, driven by Debian's Selenium).

Starts `sine serve` on a free loopback port with the bundled shapes-world model, opens the page at
1280x800, uploads a rendered scene, paints a mask stroke over its left half, runs an inpainting job
and waits for the progress bar to reach 100 %; the result must appear and differ from the source
only inside the (feathered) mask. Then each method's tab runs on the same scene with few steps:
SINE (fine-tune, edit), SpecRef (a reference with its object painted), SingleInsert (learn, generate).
Screenshots of every tab go to --screenshots (docs/images when refreshing the docs).

Exit codes: 0 passed, 1 failed, 77 skipped (no Chromium, chromedriver or Selenium here).
"""
import argparse
import base64
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e}")
    sys.exit(77)

CAPTION = "a red circle in the center on a white background"


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def start_server(sine, data):
    proc = subprocess.Popen([sine, "-q", "--threads", "2", "serve", "--port", "0", "--data", data],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        proc.kill()
        fail(f"sine serve did not start: {line!r} {proc.stderr.read()}")
    return proc, int(line.split()[1])


def pixels(png_bytes):
    img = Image.open(io.BytesIO(png_bytes)).convert("RGB")
    return img.size, list(img.getdata())


def wait_for_status(driver, word, seconds):
    WebDriverWait(driver, seconds).until(
        lambda d: word in d.find_element(By.ID, "status").text or "failed" in d.find_element(By.ID, "status").text)
    status = driver.find_element(By.ID, "status").text
    if word not in status:
        fail(f"job ended with '{status}': {driver.find_element(By.ID, 'error').text}")


def set_value(driver, element_id, value):
    box = driver.find_element(By.ID, element_id)
    box.clear()
    box.send_keys(value)


def shoot(driver, folder, name):
    if folder:
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(os.path.join(folder, name))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sine", required=True)
    ap.add_argument("--screenshots", default="")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        print("skipped: chromium / chromedriver not installed")
        sys.exit(77)

    work = tempfile.mkdtemp(prefix="sine_browser_")
    scene = os.path.join(work, "scene.png")
    subprocess.run([args.sine, "-q", "world", "render", "--caption", CAPTION, "-W", "64", "-H", "64", "-o", scene],
                   check=True, stdout=subprocess.DEVNULL)
    server, port = start_server(args.sine, os.path.join(work, "data"))
    base = f"http://127.0.0.1:{port}"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,800", f"--user-data-dir={work}/profile"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(base + "/")
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "model").text != "")
        driver.find_element(By.ID, "file").send_keys(scene)
        WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "stage").is_displayed())
        prompt = driver.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys("a blue square in the center on a white background")
        for field, value in (("steps", "20"), ("cfg", "5"), ("seed", "7"), ("strength", "0.9"), ("mask-blur", "2")):
            box = driver.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        # A stroke down the middle of the left half of the image.
        canvas = driver.find_element(By.ID, "mask-canvas")
        w, h = canvas.size["width"], canvas.size["height"]
        brush = driver.find_element(By.ID, "brush")
        driver.execute_script("arguments[0].value = 80", brush)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
        ActionChains(driver).move_to_element_with_offset(canvas, -w // 4, -h // 4).click_and_hold() \
            .move_by_offset(0, h // 2).release().perform()
        mask_url = driver.execute_script("return maskDataUrl()")
        if not mask_url:
            fail("the painted stroke left an empty mask")
        _, mask = pixels(base64.b64decode(mask_url.split(",", 1)[1]))
        driver.find_element(By.ID, "run").click()
        wait_for_status(driver, "done", 300)
        if driver.find_element(By.ID, "bar").get_attribute("value") not in ("1", "1.0"):
            fail("the progress bar did not reach 100 %")
        result = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, "#gallery img.result-image"))
        src = result.get_attribute("src")
        with urllib.request.urlopen(src) as response:
            size, out = pixels(response.read())
        with open(scene, "rb") as f:
            source_size, source = pixels(f.read())
        if size != source_size:
            fail(f"result is {size}, source {source_size}")
        width = size[0]
        masked = {i for i, p in enumerate(mask) if p[0] > 127}
        # Pixels farther than the feathering (3 sigma = 6 px) from the mask must be unchanged.
        near = set()
        for i in masked:
            y, x = divmod(i, width)
            for dy in range(-7, 8):
                for dx in range(-7, 8):
                    if 0 <= y + dy < size[1] and 0 <= x + dx < width:
                        near.add((y + dy) * width + x + dx)
        changed_outside = [i for i in range(len(out)) if i not in near and out[i] != source[i]]
        changed_inside = [i for i in masked if out[i] != source[i]]
        print(f"mask {len(masked)} px, changed inside {len(changed_inside)}, changed outside {len(changed_outside)}")
        if changed_outside:
            fail(f"{len(changed_outside)} pixels changed outside the mask")
        if not changed_inside:
            fail("nothing changed inside the mask")
        if args.screenshots:
            os.makedirs(args.screenshots, exist_ok=True)
        shoot(driver, args.screenshots, "serve.png")

        # The SINE tab: a short fine-tune on the scene, then an edit with its artefact.
        driver.find_element(By.ID, "tab-sine").click()
        driver.find_element(By.ID, "sine-file").send_keys(scene)
        steps = driver.find_element(By.ID, "sine-steps")
        steps.clear()
        steps.send_keys("20")
        driver.find_element(By.ID, "sine-finetune").click()
        wait_for_status(driver, "finetune: done", 300)
        WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "sine-model").get_attribute("value") != "")
        edit_steps = driver.find_element(By.ID, "sine-edit-steps")
        edit_steps.clear()
        edit_steps.send_keys("20")
        driver.find_element(By.ID, "sine-edit").click()
        wait_for_status(driver, "edit: done", 300)
        shoot(driver, args.screenshots, "serve-sine.png")

        # SpecRef: a source, a reference with its object painted, the edit.
        reference = os.path.join(work, "reference.png")
        subprocess.run([args.sine, "-q", "world", "render", "--caption", "a blue star in the center on a white background",
                        "-W", "64", "-H", "64", "-o", reference], check=True, stdout=subprocess.DEVNULL)
        driver.find_element(By.ID, "tab-specref").click()
        driver.find_element(By.ID, "sr-source-file").send_keys(scene)
        driver.find_element(By.ID, "sr-ref-file").send_keys(reference)
        ref_canvas = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "sr-ref-mask-canvas"))
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", ref_canvas)
        driver.execute_script("document.getElementById('sr-ref-brush').value = 60")
        rw, rh = ref_canvas.size["width"], ref_canvas.size["height"]
        ActionChains(driver).move_to_element_with_offset(ref_canvas, -rw // 8, 0).click_and_hold() \
            .move_by_offset(rw // 4, 0).release().perform()
        set_value(driver, "sr-steps", "10")
        driver.find_element(By.ID, "sr-run").click()
        wait_for_status(driver, "specref: done", 300)
        shoot(driver, args.screenshots, "serve-specref.png")

        # SingleInsert: learn the concept (mask from the class word), then generate it.
        driver.find_element(By.ID, "tab-insert").click()
        driver.find_element(By.ID, "insert-file").send_keys(scene)
        set_value(driver, "insert-class", "circle")
        set_value(driver, "insert-stage1", "10")
        set_value(driver, "insert-stage2", "5")
        driver.find_element(By.ID, "insert-train").click()
        wait_for_status(driver, "insert-train: done", 300)
        WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "insert-concept").get_attribute("value") != "")
        set_value(driver, "insert-prompt", "a * circle at the top left on a black background")
        set_value(driver, "insert-steps", "20")
        driver.find_element(By.ID, "insert-generate").click()
        wait_for_status(driver, "insert-generate: done", 300)
        shoot(driver, args.screenshots, "serve-insert.png")
        print("PASS")
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
