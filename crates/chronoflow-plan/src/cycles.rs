//! Finding dependency cycles between jobs (iterative Tarjan, so deep chains cannot overflow the stack).

use std::collections::BTreeMap;

/// The strongly connected components that contain a cycle (more than one node, or a node with an
/// edge to itself), each as one concrete cycle `[a, b, ..., a]` starting at its smallest node.
pub fn find_cycles(edges: &BTreeMap<String, Vec<String>>) -> Vec<Vec<String>> {
    let nodes: Vec<&String> = edges.keys().collect();
    let index_of: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let adjacency: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            let mut next: Vec<usize> = edges[*n]
                .iter()
                .filter_map(|m| index_of.get(m.as_str()).copied())
                .collect();
            next.sort_unstable();
            next.dedup();
            next
        })
        .collect();

    let n = nodes.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next_index = 0;
    let mut components: Vec<Vec<usize>> = Vec::new();

    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, position in its adjacency list)
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut pos)) = work.last_mut() {
            if let Some(&w) = adjacency[v].get(*pos) {
                *pos += 1;
                if index[w] == usize::MAX {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                let cyclic = component.len() > 1 || adjacency[v].contains(&v);
                if cyclic {
                    component.sort_unstable();
                    components.push(component);
                }
            }
        }
    }

    let mut cycles: Vec<Vec<String>> = components
        .iter()
        .map(|component| {
            let path = cycle_within(component, &adjacency);
            path.into_iter().map(|i| nodes[i].clone()).collect()
        })
        .collect();
    cycles.sort();
    cycles
}

/// A shortest cycle through the smallest node of a strongly connected component (BFS).
fn cycle_within(component: &[usize], adjacency: &[Vec<usize>]) -> Vec<usize> {
    let start = component[0];
    let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &adjacency[v] {
            if component.binary_search(&w).is_err() {
                continue;
            }
            if w == start {
                let mut forward = vec![start];
                let mut back = Vec::new();
                let mut c = v;
                while c != start {
                    back.push(c);
                    c = parent[&c];
                }
                back.reverse();
                forward.extend(back);
                forward.push(start);
                return forward;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = parent.entry(w) {
                e.insert(v);
                queue.push_back(w);
            }
        }
    }
    vec![start, start]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut g: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry((*a).to_owned()).or_default().push((*b).to_owned());
            g.entry((*b).to_owned()).or_default();
        }
        g
    }

    #[test]
    fn acyclic_graphs_have_no_cycles() {
        assert!(find_cycles(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
    }

    #[test]
    fn finds_each_cycle_once_starting_at_its_smallest_node() {
        let g = graph(&[("b", "c"), ("c", "a"), ("a", "b"), ("c", "d"), ("x", "x")]);
        assert_eq!(
            find_cycles(&g),
            vec![vec!["a", "b", "c", "a"], vec!["x", "x"]]
        );
    }

    #[test]
    fn a_long_chain_does_not_overflow_the_stack() {
        let names: Vec<String> = (0..200_000).map(|i| format!("n{i:06}")).collect();
        let mut g: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for w in names.windows(2) {
            g.insert(w[0].clone(), vec![w[1].clone()]);
        }
        g.insert(names[names.len() - 1].clone(), vec![names[0].clone()]);
        let cycles = find_cycles(&g);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].len(), 200_001);
    }
}
