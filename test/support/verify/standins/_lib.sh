# SIMULATION helpers for the FreeBSD stand-ins (test only). They replay the sections of a bundle
# directory ($FBXEN_STANDIN_BUNDLE) the way the real FreeBSD commands print them.
S=${FBXEN_STANDIN_BUNDLE:?FBXEN_STANDIN_BUNDLE not set}/sections
hang_if_asked() {
	case " ${FBXEN_STANDIN_HANG:-} " in *" $1 "*) exec sleep 30 ;; esac
	case " ${FBXEN_STANDIN_MISSING:-} " in *" $1 "*) echo "sh: $1: not found" >&2; exit 127 ;; esac
}
replay() {
	if [ -f "$S/$1.out" ]; then cat "$S/$1.out"; else exit 1; fi
}
