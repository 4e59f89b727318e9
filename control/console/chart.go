package console

import (
	"fmt"
	"io"
	"strings"
)

// Chart geometry, in SVG user units.
const (
	chartWidth  = 640
	panelHeight = 110
	chartLeft   = 48 // room for the axis labels
	chartTop    = 22
)

// writeRatesChart draws requests and signals per minute as two bar
// panels, one above the other, each on its own scale: signals are few next
// to requests and would vanish on a shared one. It draws with attributes
// only (no style element), as the console's Content Security Policy
// allows.
func writeRatesChart(w io.Writer, rates []Rate) error {
	var b strings.Builder
	height := 2*(panelHeight+chartTop) + 20
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" font-family="sans-serif" font-size="11">`,
		chartWidth, height, chartWidth, height)
	b.WriteString(`<title>Requests and signals per minute, last hour</title>`)
	panel(&b, 0, "Requests per minute", "#2f6fb3", rates, func(r Rate) int { return r.Requests })
	panel(&b, panelHeight+chartTop, "Signals per minute", "#c2410c", rates, func(r Rate) int { return r.Signals })
	y := 2*(panelHeight+chartTop) + 14
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">-%dm</text>`, chartLeft, y, len(rates))
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555" text-anchor="end">now</text>`, chartWidth-2, y)
	b.WriteString(`</svg>`)
	_, err := io.WriteString(w, b.String())
	return err
}

func panel(b *strings.Builder, top int, title, color string, rates []Rate, value func(Rate) int) {
	peak, total := 0, 0
	for _, r := range rates {
		peak = max(peak, value(r))
		total += value(r)
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" fill="#222" font-weight="bold">%s</text>`, chartLeft, top+14, title)
	fmt.Fprintf(b, `<text x="%d" y="%d" fill="#555" text-anchor="end">%d in the hour, peak %d</text>`, chartWidth-2, top+14, total, peak)
	base := top + chartTop + panelHeight - 4
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`, chartLeft, base, chartWidth, base)
	fmt.Fprintf(b, `<text x="%d" y="%d" fill="#555" text-anchor="end">%d</text>`, chartLeft-4, top+chartTop+8, peak)
	fmt.Fprintf(b, `<text x="%d" y="%d" fill="#555" text-anchor="end">0</text>`, chartLeft-4, base)
	if len(rates) == 0 || peak == 0 {
		return
	}
	step := float64(chartWidth-chartLeft) / float64(len(rates))
	usable := float64(panelHeight - 8)
	for i, r := range rates {
		v := value(r)
		if v == 0 {
			continue
		}
		h := max(usable*float64(v)/float64(peak), 1)
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %d</title></rect>`,
			float64(chartLeft)+float64(i)*step+0.5, float64(base)-h, max(step-1, 1), h, color, r.Minute.Format("15:04"), v)
	}
}
