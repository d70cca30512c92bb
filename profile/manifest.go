package profile

// podSpecPath says where each workload kind keeps its pod spec.
var podSpecPath = map[string][]string{
	"Pod":                   {"spec"},
	"Deployment":            {"spec", "template", "spec"},
	"StatefulSet":           {"spec", "template", "spec"},
	"DaemonSet":             {"spec", "template", "spec"},
	"ReplicaSet":            {"spec", "template", "spec"},
	"ReplicationController": {"spec", "template", "spec"},
	"Job":                   {"spec", "template", "spec"},
	"PodTemplate":           {"template", "spec"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template", "spec"},
}

// podImages returns the image of every container, init container and
// ephemeral container of a Kubernetes object, following List items.
func podImages(doc any) []string {
	kind, _ := get(doc, "kind").(string)
	if kind == "List" {
		var out []string
		items, _ := get(doc, "items").([]any)
		for _, it := range items {
			out = append(out, podImages(it)...)
		}
		return out
	}
	path, ok := podSpecPath[kind]
	if !ok {
		return nil
	}
	spec := get(doc, path...)
	var out []string
	for _, field := range []string{"initContainers", "containers", "ephemeralContainers"} {
		list, _ := get(spec, field).([]any)
		for _, c := range list {
			if s := scalarString(get(c, "image")); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
