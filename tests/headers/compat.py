#!/usr/bin/env python3
"""Declaration compatibility of include/ with Debian's Xen 4.17 headers.

1. Every function Debian's xenstore.h / xenstore_lib.h declares is declared again, with
   Debian's exact prototype, after including ours: a conflicting type fails to compile.
2. Every macro, enum member, struct size and field offset those headers (and xs_wire.h)
   define is printed by one small program built against Debian's headers and by the same
   program built against ours; the two outputs must be identical. Our header may define
   more (the later protocol additions), never differently.
3. A program written for Debian's headers (the compat includes too) compiles unchanged.

  tests/headers/compat.py [REFERENCE_ROOT]     (default: <repo>/.reference/root)
Prints one line per check and a closing `N passed, N failed`.
"""
import os, re, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OURS = os.path.join(ROOT, "include")
REF = os.path.join(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".reference/root"),
                   "usr/include")


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def read(name):
    with open(os.path.join(REF, name)) as f:
        return strip_comments(f.read())


def prototypes(text):
    flat = re.sub(r"\s+", " ", text)
    return re.findall(r"((?:const )?[A-Za-z_][\w ]*[\s\*]+\**(xs_\w+)\s*\([^;{}()]*\));", flat)


def macros(text):
    out = []
    for m in re.finditer(r"^[ \t]*#[ \t]*define[ \t]+([A-Z_][A-Z0-9_]*)[ \t]+(\S.*)$", text, re.M):
        name, body = m.group(1), m.group(2).strip()
        if name.startswith("_") or "(" in name:
            continue
        out.append((name, body))
    return out


def enum_members(text):
    names = []
    for body in re.findall(r"enum\s+\w+\s*\{(.*?)\}", text, re.S):
        for item in body.split(","):
            item = re.sub(r"#define[^\n]*", "", item).strip()
            if item:
                names.append(item.split("=")[0].strip())
    return names


def structs(text):
    out = {}
    for name, body in re.findall(r"struct\s+(\w+)\s*\{(.*?)\};", text, re.S):
        fields = []
        for decl in re.sub(r"#define[^\n]*", "", body).split(";"):
            decl = decl.strip()
            if not decl:
                continue
            for part in decl.split(","):
                m = re.search(r"(\w+)\s*(\[[^\]]*\])?\s*$", part.strip())
                if m:
                    fields.append(m.group(1))
        out[name] = fields
    return out


def compile_and_run(src, include, libs_ok=True):
    with tempfile.TemporaryDirectory() as d:
        c = os.path.join(d, "t.c")
        exe = os.path.join(d, "t")
        with open(c, "w") as f:
            f.write(src)
        p = subprocess.run(["cc", "-std=gnu11", "-Wall", "-Werror", "-Wno-cpp", "-I", include,
                            "-o", exe, c], capture_output=True, text=True)
        if p.returncode:
            return None, p.stderr
        r = subprocess.run([exe], capture_output=True, text=True)
        return r.stdout, r.stderr


def main():
    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print("%s  %s%s" % ("PASS" if ok else "FAIL", name, ("\n" + detail) if detail and not ok else ""))

    lib_h = read("xenstore_lib.h")
    xs_h = read("xenstore.h")
    wire_h = read("xen/io/xs_wire.h")

    # 1. Prototypes, redeclared after our headers.
    protos = prototypes(lib_h) + prototypes(xs_h)
    src = "#include <xenstore.h>\n" + "".join("%s;\n" % p for p, _ in protos) + "int main(void){return 0;}\n"
    out, err = compile_and_run(src, OURS)
    check("%d function prototypes of Debian's headers agree with ours" % len(protos),
          out is not None, err)

    # 2. Values and layouts, printed by the same program against both header sets.
    lines = []
    for name, body in macros(lib_h) + macros(xs_h) + macros(wire_h):
        if body.startswith('"'):
            lines.append('printf("%s=%%s\\n", %s);' % (name, name))
        elif name in ("XSD_ERROR",):
            continue
        else:
            lines.append('printf("%s=%%lld\\n", (long long)(%s));' % (name, name))
    for name in enum_members(wire_h):
        lines.append('printf("%s=%%lld\\n", (long long)(%s));' % (name, name))
    for s, fields in list(structs(lib_h).items()) + list(structs(wire_h).items()):
        if s == "xsd_errors":
            continue
        lines.append('printf("sizeof(struct %s)=%%zu\\n", sizeof(struct %s));' % (s, s))
        for f in fields:
            lines.append('printf("offsetof(%s.%s)=%%zu\\n", offsetof(struct %s, %s));' % (s, f, s, f))
    lines.append('for (unsigned i = 0; i < sizeof(xsd_errors)/sizeof(xsd_errors[0]); i++) '
                 'printf("xsd_errors[%u]=%d %s\\n", i, xsd_errors[i].errnum, xsd_errors[i].errstring);')
    prog = ("#include <stddef.h>\n#include <stdio.h>\n#include <xenstore.h>\n"
            "int main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n")
    ref_out, ref_err = compile_and_run(prog, REF)
    our_out, our_err = compile_and_run(prog, OURS)
    if ref_out is None:
        check("probe program builds against Debian's headers", False, ref_err)
    elif our_out is None:
        check("probe program builds against our headers", False, our_err)
    else:
        ref_l, our_l = ref_out.splitlines(), our_out.splitlines()
        # Grown since 4.17, as in Xen master: the ring page gained evtchn_port (so its size
        # differs; every 4.17 offset stays), and four message types were added before
        # XS_TYPE_COUNT. Nothing else may differ.
        grown = {"sizeof(struct xenstore_domain_interface)", "XS_TYPE_COUNT"}
        diffs = [(a, b) for a, b in zip(ref_l, our_l)
                 if a != b and a.split("=")[0] not in grown]
        check("%d macro values, enum members, struct sizes and offsets match" % len(ref_l),
              not diffs and len(ref_l) == len(our_l),
              "\n".join("  debian: %s\n  ours:   %s" % d for d in diffs[:20]))

    # 3. The deprecated include names still work.
    src = "#include <xs.h>\n#include <xs_lib.h>\nint main(void){return XBT_NULL;}\n"
    with tempfile.TemporaryDirectory() as d:
        os.symlink(os.path.join(OURS, "xenstore-compat/xs.h"), os.path.join(d, "xs.h"))
        os.symlink(os.path.join(OURS, "xenstore-compat/xs_lib.h"), os.path.join(d, "xs_lib.h"))
        c = os.path.join(d, "t.c")
        with open(c, "w") as f:
            f.write(src)
        p = subprocess.run(["cc", "-Wall", "-Werror", "-Wno-cpp", "-I", d, "-I", OURS, "-c",
                            "-o", os.path.join(d, "t.o"), c], capture_output=True, text=True)
        check("deprecated <xs.h>/<xs_lib.h> includes compile", p.returncode == 0, p.stderr)

    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
